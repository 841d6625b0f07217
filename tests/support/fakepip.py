"""A stand-in for pip in the wheelhouse tests: `pip wheel` / `pip download` without a network,
writing wheel files whose contents a fake poller lock's hashes describe."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from fleetctl.artifacts.errors import ArtifactError
from fleetctl.artifacts.hostpython import Target
from fleetctl.artifacts.wheellock import Locked


def content(name: str, version: str, how: str) -> bytes:
    """What the fake pip writes as the wheel of `name==version`, fetched `how`."""
    return f"{how} {name}=={version}".encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FAKE_LOCK = {
    name: Locked(name, version, frozenset(hashes))
    for name, version, hashes in [
        # nats-py publishes a wheel (pip wheel fetches it), nkeys only an sdist (built here)
        ("nats-py", "2.16.0", {digest(content("nats-py", "2.16.0", "wheel"))}),
        ("nkeys", "0.2.1", {digest(b"the sdist")}),
        ("pynacl", "1.6.2", {digest(content("pynacl", "1.6.2", "download"))}),
        ("pip", "26.3", {digest(content("pip", "26.3", "download"))}),
    ]
}


class FakePip:
    """Stands in for `pip wheel` / `pip download`: writes wheel files whose contents the fake
    lock's hashes describe, records each call and the requirement file it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.requirements: list[list[str]] = []
        self.fail: str | None = None

    def __call__(self, target: Target, *args: str) -> None:
        self.calls.append(args)
        assert "--require-hashes" in args
        lines = Path(args[args.index("-r") + 1]).read_text().splitlines()
        self.requirements.append(lines)
        if self.fail and args[0] == "download":
            dest = Path(args[args.index("-d") + 1])
            dest.mkdir(parents=True, exist_ok=True)
            (dest / "half-written.whl").write_bytes(b"x")
            raise ArtifactError(self.fail)
        out = Path(args[args.index("-w" if args[0] == "wheel" else "-d") + 1])
        out.mkdir(parents=True)
        for line in lines:
            spec = line.split(" ")[0]
            if spec.endswith(".whl"):
                shutil.copy(spec, out)
                continue
            name, version = spec.split("==")
            how = "wheel" if args[0] == "wheel" else "download"
            wheel = out / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            wheel.write_bytes(content(name, version, how))
