"""Reading documents: YAML and JSON files, with errors naming the file (the bottom layer).

Every stage reads its files through here (job files, class maps, a chips folder's JSON, model
metadata), so a bad or hostile file fails the same way everywhere: a :class:`ConfigError` or
:class:`InputFileError` naming the file and what it should be, never a bare ``KeyError`` or a
``yaml`` traceback. This module imports nothing of geounet but ``errors``; writing lives beside it
in :mod:`geounet._files`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from geounet.errors import ConfigError, InputFileError

_NULL_TAG = "tag:yaml.org,2002:null"


class TextLoader(yaml.SafeLoader):
    """A safe YAML loader that resolves only ``null``/``~``/empty; every other scalar is text."""


TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == _NULL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# Limits of what a YAML document may ask the loader to build. A job file is a few kB with no
# anchors; the limits only stop documents made to exhaust memory or the stack (a 2 kB "billion
# laughs" of nested aliases expands to 10**9 nodes, and walking it took gigabytes).
MAX_YAML_BYTES = 4 * 1024**2
MAX_YAML_DEPTH = 64
MAX_YAML_ALIASES = 1_000
MAX_YAML_NODES = 200_000


class _YamlLimitError(Exception):
    """A YAML document passed one of the loader's limits."""


class _LimitedSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python tags) that counts aliases, depth and expanded nodes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _YamlLimitError(f"more than {MAX_YAML_ALIASES} aliases (*name)")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlLimitError(f"nesting deeper than {MAX_YAML_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node)
        return node


def _expanded_size(root: yaml.Node) -> int:
    """Nodes the document has once every alias is expanded; raise past the limit or on a cycle."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _YamlLimitError("an alias that refers to itself (a recursive structure)")
        open_nodes.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        total = 1 + sum(size(c) for c in children)
        open_nodes.discard(key)
        if total > MAX_YAML_NODES:
            raise _YamlLimitError(f"more than {MAX_YAML_NODES:,} values once aliases are expanded")
        sizes[key] = total
        return total

    return size(root)


def load_yaml_text(
    text: str, source: str, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader
) -> Any:
    """Parse YAML safely and within limits: no Python tags, bounded size, depth and aliases.

    The one YAML reader of geounet (files through :func:`read_yaml`, ``--set`` values through
    :func:`parse_override`).

    Args:
        text: The YAML document.
        source: What it is, for messages (``job file job.yaml``, ``--set train.epochs=5``).
        loader: A safe loader class whose resolvers to use (class maps read every value as
            text); the limits apply to it too.

    Returns:
        The parsed value (``None`` for an empty document).

    Raises:
        ConfigError: Invalid YAML, a Python or other unknown tag, or a document past the limits
            (:data:`MAX_YAML_BYTES`, :data:`MAX_YAML_DEPTH`, :data:`MAX_YAML_ALIASES`,
            :data:`MAX_YAML_NODES`).
    """
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{source} is {len(text):,} characters; geounet reads YAML of at most "
            f"{MAX_YAML_BYTES:,}. Is it the right file?"
        )
    limited = (
        _LimitedSafeLoader
        if loader is yaml.SafeLoader
        else type("_LimitedLoader", (_LimitedSafeLoader, loader), {})
    )
    parser = limited(text)
    try:
        return parser.get_single_data()
    except _YamlLimitError as exc:
        raise ConfigError(
            f"{source} is refused: it has {exc}. Write the values out instead of nesting "
            "aliases (&anchor / *alias)."
        ) from None
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(
            f"{source}: {exc.problem} {exc.problem_mark or ''}. Only plain YAML is read (strings, "
            "numbers, lists, mappings); tags such as !!python/... are never run. Remove the tag, "
            "or quote the value to mean the text."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply to read.") from None
    finally:
        parser.dispose()


def read_yaml(
    path: str | Path, what: str = "config", loader: type[yaml.SafeLoader] = yaml.SafeLoader
) -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file (``what`` says what it should be).

    ``loader`` is a safe loader class (class maps use one that reads every value as text).

    Raises:
        ConfigError: The file cannot be read, is not YAML, is past the loader's limits (see
            :func:`load_yaml_text`) or is not a mapping.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:  # refused before it is read into memory
            raise ConfigError(
                f"{what} {p} is {size:,} bytes; geounet reads YAML of at most "
                f"{MAX_YAML_BYTES:,}. Is it the right file?"
            )
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {p}: {exc.strerror or exc}.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {p} is not UTF-8 text ({exc.reason}); is it YAML?") from exc
    data = load_yaml_text(text, f"{what} {p}", loader=loader)
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p} must be a YAML mapping (of sections or keys).")
    return data


def read_json(path: str | Path, *, what: str = "file", fix: str = "") -> dict[str, Any]:
    """Read a JSON object, with errors naming the file and the remedy.

    Args:
        path: The file.
        what: What it is, for messages (``chips folder file``, ``model metadata``).
        fix: What to do when it is missing or broken (appended to the message).

    Raises:
        InputFileError: The file is missing, unreadable, not JSON or not a JSON object.
    """
    p = Path(path)
    hint = f" {fix}" if fix else ""
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputFileError(f"{what} {p} is missing.{hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read {what} {p}: {exc}.{hint}") from exc
    if not isinstance(data, dict):
        raise InputFileError(f"{what} {p} must hold a JSON object.{hint}")
    return data
