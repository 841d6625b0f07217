"""A repository's credentials and copied files, read from this machine: what is shipped, and
each way a file can be unusable, said once with its fix and without its contents."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetctl.config.errors import Mark
from fleetctl.config.model import Repo, RepoCopy
from fleetctl.errors import LocalFileError
from fleetctl.identity.repocreds import read

TOKEN = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"


def repo(**files: object) -> Repo:
    return Repo("app", "git@github.com:team/app.git", Mark("fleet.yaml", 1, 1), **files)  # type: ignore[arg-type]


def secret_file(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True
    )
    return path


def test_the_deploy_key_the_token_alone_and_each_copy_are_read(tmp_path: Path) -> None:
    key = keygen(tmp_path / "deploy")
    token = secret_file(tmp_path / "t.env", f"# forge\nOTHER=1\nGITHUB_TOKEN='{TOKEN}'\n".encode())
    env = tmp_path / "app.env"
    env.write_bytes(b"DATABASE_URL=postgres://x\n")
    got = read(repo(deploy_key=key, token=token, copy=(RepoCopy(env, ".env"),)))
    assert got.deploy_key == key.read_bytes()
    assert got.token == TOKEN.encode() + b"\n"
    assert got.copies == (b"DATABASE_URL=postgres://x\n",)
    assert TOKEN not in repr(got) and "OPENSSH" not in repr(got)


@pytest.mark.parametrize("variable", ["GH_TOKEN", "GIT_TOKEN"])
def test_the_token_may_be_under_other_names(tmp_path: Path, variable: str) -> None:
    token = secret_file(tmp_path / "t.env", f"{variable}={TOKEN}\n".encode())
    assert read(repo(token=token)).token == TOKEN.encode() + b"\n"


def problem(tmp_path: Path, **files: object) -> LocalFileError:
    with pytest.raises(LocalFileError) as caught:
        read(repo(**files))
    return caught.value


def test_a_missing_or_readable_by_others_credential_is_refused(tmp_path: Path) -> None:
    gone = problem(tmp_path, deploy_key=tmp_path / "nope")
    assert gone.what == (
        "does not exist; it should hold the deploy key of repository 'app' (credentials: in "
        "fleet.yaml)"
    )
    open_key = keygen(tmp_path / "k")
    open_key.chmod(0o644)
    wide = problem(tmp_path, deploy_key=open_key)
    assert "may be read by others (mode 0644)" in wide.what
    assert wide.fix == f"chmod 600 {open_key}"


def test_a_key_with_a_passphrase_or_no_key_at_all_is_refused(tmp_path: Path) -> None:
    locked = problem(tmp_path, deploy_key=keygen(tmp_path / "k", "secret-pass"))
    assert "has a passphrase" in locked.what and "ssh-keygen -p" in locked.fix
    public = secret_file(tmp_path / "pub", (tmp_path / "k.pub").read_bytes())
    assert "is not a private key" in problem(tmp_path, deploy_key=public).what


def test_a_token_file_without_a_token_or_with_a_broken_one_is_refused_unquoted(
    tmp_path: Path,
) -> None:
    none = problem(tmp_path, token=secret_file(tmp_path / "a", b"TOKEN=abc\n"))
    assert none.what == (
        "holds none of GITHUB_TOKEN, GH_TOKEN, GIT_TOKEN (the token of repository 'app')"
    )
    broken = problem(
        tmp_path, token=secret_file(tmp_path / "b", b"GITHUB_TOKEN=ghp_secret value\r\n")
    )
    assert "is not a plain token" in broken.what
    assert "ghp_secret" not in str(broken) + broken.fix


def test_a_copied_file_must_exist_and_stay_small(tmp_path: Path) -> None:
    missing = problem(tmp_path, copy=(RepoCopy(tmp_path / "nope.env", ".env"),))
    assert missing.what.startswith("is not a file; it is a file repository 'app' copies")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    assert "larger than 1 MiB" in problem(tmp_path, copy=(RepoCopy(big, "big"),)).what
