"""The fleet the bus benches run against: one broker, one worker host, command workers (the
benches publish and answer for them; nothing runs on the hosts)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_command_fleet(root: Path, workers: list[str]) -> Path:
    """servers.yaml and fleet.yaml under `root`; the path of fleet.yaml."""
    servers = [
        {"name": "broker", "address": "192.0.2.1", "roles": ["broker-host"]},
        {"name": "node", "address": "192.0.2.2", "roles": ["worker-host"]},
    ]
    entries = [
        {"worker_id": w, "llm": "command", "command": ["true"], "host": "node"} for w in workers
    ]
    (root / "servers.yaml").write_text(yaml.safe_dump({"version": 1, "servers": servers}))
    (root / "fleet.yaml").write_text(yaml.safe_dump({"version": 1, "workers": entries}))
    return root / "fleet.yaml"
