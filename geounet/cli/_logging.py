"""Lightning's log output under the CLI's logging setup."""

from __future__ import annotations

import logging


def tame_lightning() -> None:
    """Route Lightning's messages through the CLI's handler only, its INFO chatter at -vv.

    ``import lightning`` adds its own console handler while its records also reach the root
    handler the CLI sets up, so every line came out twice; its INFO lines ("GPU available",
    tips) are noise next to geounet's own progress messages.
    """
    import lightning  # noqa: F401  (its import adds the handler removed here)

    base = logging.getLogger("lightning")
    for handler in list(base.handlers):
        base.removeHandler(handler)
    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    level = logging.INFO if debug else logging.WARNING
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(level)
