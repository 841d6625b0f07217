"""fleetctl reads ~/.ssh/config through Fabric, answering each host's lookup once per run."""

from __future__ import annotations

from pathlib import Path

import paramiko

from fleetctl.transport import ssh

CONFIG = """\
Host web-*
    User deploy
    IdentityFile ~/.ssh/web
Host web-2
    Port 2222
Host *
    ConnectTimeout 7
"""


def test_answers_are_paramikos_and_callers_get_their_own_copy(tmp_path: Path) -> None:
    path = tmp_path / "ssh_config"
    path.write_text(CONFIG)
    memo = ssh._parsed_ssh_config(path)
    plain = paramiko.SSHConfig.from_path(str(path))
    for host in ("web-1", "web-2", "db"):
        assert memo.lookup(host) == plain.lookup(host)
    first = memo.lookup("web-2")
    first["identityfile"].append("/elsewhere")
    first["port"] = "1"
    again = memo.lookup("web-2")
    assert again["port"] == "2222"
    assert again["identityfile"] == plain.lookup("web-2")["identityfile"]


def test_each_host_is_looked_up_once(tmp_path: Path) -> None:
    path = tmp_path / "ssh_config"
    path.write_text(CONFIG)
    seen: list[str] = []
    config = paramiko.SSHConfig.from_path(str(path))
    inner = config.lookup

    def counting(host: str) -> paramiko.SSHConfigDict:
        seen.append(host)
        return inner(host)

    config.lookup = counting
    memo = ssh._answering_once_per_host(config)
    for _ in range(3):
        memo.lookup("web-1")
        memo.lookup("db")
    assert seen == ["web-1", "db"]
