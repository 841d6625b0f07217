"""A local stand-in for the npm registry, for tests that run the real npm: it serves each
package's metadata (the "packument") and its tarballs over HTTP, and a test may swap a
tarball for other bytes under the same version, as a compromised registry or mirror would.
Stdlib only."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def tarball(manifest: dict[str, Any], files: dict[str, tuple[str, int]]) -> bytes:
    """An npm package tarball: `package/package.json` and each file (text, mode)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, (text, mode) in {"package.json": (json.dumps(manifest), 0o644), **files}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


class Registry:
    """Packages by name, each version's manifest and tarball; `url` once started."""

    def __init__(self) -> None:
        self.url = ""
        self.packages: dict[str, dict[str, tuple[dict[str, Any], bytes]]] = {}

    def publish(self, manifest: dict[str, Any], files: dict[str, tuple[str, int]]) -> bytes:
        """Serve this version (replacing whatever it was); the tarball's bytes."""
        data = tarball(manifest, files)
        self.packages.setdefault(manifest["name"], {})[manifest["version"]] = (manifest, data)
        return data

    def packument(self, name: str) -> dict[str, Any]:
        versions = {}
        for version, (manifest, data) in self.packages[name].items():
            sha512 = base64.b64encode(hashlib.sha512(data).digest()).decode()
            dist = {
                "tarball": f"{self.url}tarballs/{urllib.parse.quote(name, safe='')}/{version}.tgz",
                "integrity": f"sha512-{sha512}",
                "shasum": hashlib.sha1(data).hexdigest(),
            }
            versions[version] = {**manifest, "dist": dist}
        return {"name": name, "dist-tags": {"latest": max(versions)}, "versions": versions}

    def answer(self, path: str) -> bytes | None:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts[0] == "tarballs" and len(parts) == 3:
            found = self.packages.get(parts[1], {}).get(parts[2].removesuffix(".tgz"))
            return found[1] if found else None
        name = "/".join(parts)
        return json.dumps(self.packument(name)).encode() if name in self.packages else None


@contextmanager
def running_registry() -> Iterator[Registry]:
    registry = Registry()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = registry.answer(self.path.split("?")[0])
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    registry.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
