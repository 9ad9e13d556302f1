"""A loopback HTTP file server with Range support, as GDAL's /vsicurl/ needs (a subprocess)."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single ``Range: bytes=a-b`` requests (206 answers).

    The standard handler ignores Range and sends whole files; GDAL then refuses with "Range
    downloading not supported by this server", so a real COG server's behaviour is needed.
    """

    protocol_version = "HTTP/1.1"  # keep-alive and Content-Length, as object stores answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass

    def handle(self) -> None:
        # GDAL closes connections it has read enough of (a whole-file GET it probes): not an
        # error of the server, so not a traceback on stderr.
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_head(self):  # type: ignore[no-untyped-def]
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        path = Path(self.translate_path(self.path))
        if path.is_dir():  # no listings, as on a bucket: GDAL then probes files by name only
            self.send_error(403)
            return None
        if match is None or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start = int(match[1])
        end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
        if start >= len(data):
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        import io

        return io.BytesIO(data[start : end + 1])


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """Serve ``folder`` on 127.0.0.1 (a free port); yields the base URL and the request log.

    The server runs in another process: rasterio holds the GIL while GDAL opens a dataset, so
    a server thread in this process could not answer GDAL's requests (a deadlock). The log
    list is filled when the block ends.
    """
    log = folder.parent / f".{folder.name}-requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, __file__, str(folder), str(log)], stdout=subprocess.PIPE, text=True
    )
    seen: list[tuple[str, str | None]] = []
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}", seen
    finally:
        proc.terminate()
        proc.wait(10)
        if log.exists():
            seen += [tuple(json.loads(line)) for line in log.read_text().splitlines()]


def _main(folder: str, log: str) -> None:
    class Logged(RangeHandler):
        def send_head(self):  # type: ignore[no-untyped-def]
            with open(log, "a") as f:
                f.write(json.dumps([self.path, self.headers.get("Range")]) + "\n")
            return super().send_head()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Logged, directory=folder))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
