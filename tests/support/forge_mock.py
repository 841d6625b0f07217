"""A STAND-IN for GitHub's REST API (pull requests only), on a local port, for tests.

Answers `POST /repos/{owner}/{name}/pulls` the way GitHub does (docs.github.com, "Create a pull
request"): 401 without the expected bearer token, 422 `Validation Failed` when the head branch
is not in the repository (here: the test's upstream bare repository) or a pull request for
that head already exists, else 201 with `number` and `html_url`. Every request is recorded.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ForgeMock:
    """`with ForgeMock(token, {"team/app": upstream_bare}) as forge: forge.url ...`"""

    token: str
    repos: dict[str, Path]
    seen: list[Seen] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ForgeMock:
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    body = None
                mock.seen.append(Seen("POST", self.path, dict(self.headers.items()), body))
                status, answer = mock.answer(self.path, self.headers.get("Authorization"), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, auth: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "repos" or parts[3] != "pulls":
            return 404, {"message": "Not Found"}
        if auth != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials"}
        name = f"{parts[1]}/{parts[2]}"
        bare = self.repos.get(name)
        if bare is None:
            return 404, {"message": "Not Found"}
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("title", "head", "base")
        ):
            return 422, {"message": "Validation Failed", "errors": [{"message": "bad body"}]}
        for side in ("head", "base"):
            if not _has_branch(bare, body[side]):
                return 422, {
                    "message": "Validation Failed",
                    "errors": [{"resource": "PullRequest", "field": side, "code": "invalid"}],
                }
        if any(p["head"] == body["head"] for p in self.pulls):
            owner = parts[1]
            why = f"A pull request already exists for {owner}:{body['head']}."
            return 422, {"message": "Validation Failed", "errors": [{"message": why}]}
        number = len(self.pulls) + 1
        pull = {
            **body,
            "number": number,
            "html_url": f"https://github.example/{name}/pull/{number}",
        }
        self.pulls.append(pull)
        return 201, pull


def _has_branch(bare: Path, branch: str) -> bool:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=bare,
        capture_output=True,
    )
    return done.returncode == 0
