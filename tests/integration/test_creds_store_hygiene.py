"""The credential store's hygiene through `fleetctl creds ...` on the example fleet: loose
modes, damaged .creds files, a signing-key file with the wrong seed, a backup that neither
clobbers nor leaves out the tunnel keys, and two revocations at once in two processes."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetctl.cli.main import cli
from fleetctl.config.loader import load_fleet
from fleetctl.config.model import Fleet
from fleetctl.identity import credentials, natsaccess, tunnelkeys
from nsc import jwt
from nsc.authority import Authority
from nsc.keys import Role, generate
from nsc.permissions import Permissions
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS

pytestmark = pytest.mark.integration

WORKER = "cc-go-dev-01"


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLE_SERVERS, tmp_path / "servers.yaml")
    text = EXAMPLE_FLEET.read_text() + "\ncreds:\n  stores_dir: nsc/stores\n  keys_dir: nsc/keys\n"
    (tmp_path / "fleet.yaml").write_text(text)
    assert run(tmp_path, "creds", "init").exit_code == 0
    assert run(tmp_path, "creds", "issue", "--all").exit_code == 0
    return tmp_path


def run(fleet_dir: Path, *args: str) -> Result:
    base = ["-f", str(fleet_dir / "fleet.yaml"), "-s", str(fleet_dir / "servers.yaml")]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def fleet_of(fleet_dir: Path) -> Fleet:
    return load_fleet(fleet_dir / "fleet.yaml", fleet_dir / "servers.yaml")


def authority_of(fleet_dir: Path) -> Authority:
    authority = credentials.load(fleet_of(fleet_dir))
    assert authority is not None
    return authority


def test_a_sound_store_passes_the_check(fleet_dir: Path) -> None:
    done = run(fleet_dir, "creds", "check")
    assert done.exit_code == 0, done.stderr
    assert "the credential store is sound" in done.stderr


def test_loose_modes_are_reported_with_the_command_that_fixes_them(fleet_dir: Path) -> None:
    authority = authority_of(fleet_dir)
    seed = authority.keystore.key_path(
        authority.account(authority.services_account).signer.public_key
    )
    seed.chmod(0o666)
    authority.store.dir.chmod(0o777)
    done = run(fleet_dir, "creds", "check")
    assert done.exit_code == 1
    keys, stores = authority.keystore.root, authority.dirs.stores
    assert f"{seed} (0666)" in done.stderr and f"{authority.store.dir} (0777)" in done.stderr
    assert f"fix: chmod -R go-rwx {keys}" in done.stderr
    assert f"fix: chmod -R go-rwx {stores}" in done.stderr
    plan = credentials.plan_inputs(fleet_of(fleet_dir))
    assert any(f"chmod -R go-rwx {keys}" in w for w in plan.warnings)
    for root in (keys, stores):
        subprocess.run(["chmod", "-R", "go-rwx", str(root)], check=True)
    assert run(fleet_dir, "creds", "check").exit_code == 0


def test_a_damaged_creds_file_is_reported_and_rewritten_not_called_valid(fleet_dir: Path) -> None:
    authority = authority_of(fleet_dir)
    path = authority.creds_path(natsaccess.worker_user(WORKER))
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    done = run(fleet_dir, "creds", "check")
    assert done.exit_code == 1
    assert f"{path}: the .creds file is damaged; fix: fleetctl creds issue --worker {WORKER}" in (
        done.stderr
    )
    plan = credentials.plan_inputs(fleet_of(fleet_dir))
    assert WORKER in plan.missing and WORKER not in plan.creds  # never deployed damaged
    done = run(fleet_dir, "creds", "issue", "--all")
    assert done.exit_code == 0
    assert f"rewrote the damaged .creds of {WORKER} from the store" in done.stderr
    assert "0 issued, 1 rewritten, 6 already valid" in done.stderr
    assert path.read_bytes() == good


def test_a_creds_file_with_another_seed_is_replaced_by_a_new_key(fleet_dir: Path) -> None:
    authority = authority_of(fleet_dir)
    user = natsaccess.worker_user(WORKER)
    old = authority.user_record(user)
    path = authority.creds_path(user)
    other = generate(Role.USER).seed.reveal().decode()
    text = path.read_text()
    seed_line = next(line for line in text.splitlines() if line.startswith("SU"))
    path.write_text(text.replace(seed_line, other))
    authority.keystore.remove(old.public_key)  # and the store has no copy to rewrite from
    assert "does not match its JWT" in run(fleet_dir, "creds", "check").stderr
    done = run(fleet_dir, "creds", "issue", "--worker", WORKER)
    assert done.exit_code == 0 and "1 issued" in done.stderr
    now = authority_of(fleet_dir)
    assert now.user_record(user).public_key != old.public_key
    revoked = jwt.decode(now.account_jwt(now.services_account)).claims["nats"]["revocations"]
    assert old.public_key in revoked
    assert run(fleet_dir, "creds", "check").exit_code == 0


def test_a_signing_key_file_with_the_wrong_seed_is_reported(fleet_dir: Path) -> None:
    authority = authority_of(fleet_dir)
    signer = authority.account(authority.services_account).signer.public_key
    path = authority.keystore.key_path(signer)
    path.write_bytes(generate(Role.ACCOUNT).seed.reveal())
    done = run(fleet_dir, "creds", "check")
    assert done.exit_code == 1
    assert f"{path}: holds the seed of another key; fix: restore it from your backup" in (
        done.stderr
    )


def test_backup_refuses_to_overwrite_and_holds_the_tunnel_keys(fleet_dir: Path) -> None:
    fleet = fleet_of(fleet_dir)
    keys = tunnelkeys.ensure(fleet, ["worker-node-1", "worker-node-2"])
    out = fleet_dir / "backup.tgz"
    out.write_bytes(b"an older backup")
    done = run(fleet_dir, "creds", "backup", "--out", str(out))
    assert done.exit_code == 1
    assert f"{out} already exists" in done.stderr and "--force" in done.stderr
    assert out.read_bytes() == b"an older backup"
    assert run(fleet_dir, "creds", "backup", "--out", str(out), "--force").exit_code == 0
    with tarfile.open(fileobj=io.BytesIO(out.read_bytes())) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for host, key in keys.items():
            name = f"keys/fleetctl-tunnel/{host}"
            extracted = tar.extractfile(members[name])
            assert extracted is not None and extracted.read() == key.private
    assert out.stat().st_mode & 0o777 == 0o600


REVOKER = """
import sys, time
from nsc import jwt
from nsc.authority import Authority
from pathlib import Path
from nsc.store import NscDirs
dirs = NscDirs(Path(sys.argv[1]), Path(sys.argv[2]))
start, names = float(sys.argv[3]), sys.argv[4:]
authority = Authority.load(dirs, "fleet")
time.sleep(max(0.0, start - time.time()))
for name in names:
    authority.revoke_user(name)
"""


def test_two_processes_revoking_at_once_lose_no_revocation(fleet_dir: Path) -> None:
    """Each revocation reads the account JWT, adds a key and writes it back: without the
    store's lock the two processes overwrite each other's additions."""
    authority = authority_of(fleet_dir)
    names = [f"race-{i}" for i in range(40)]
    for name in names:
        authority.issue_user(name, Permissions())
    start = str(time.time() + 1.5)  # both load the store, then start in the same instant
    dirs = [str(authority.dirs.stores), str(authority.dirs.keys)]
    procs = [
        subprocess.Popen([sys.executable, "-c", REVOKER, *dirs, start, *names[i::2]])
        for i in (0, 1)
    ]
    assert [p.wait(60) for p in procs] == [0, 0]
    records = {r.name: r for r in authority_of(fleet_dir).list_users()}
    assert [n for n in names if not records[n].revoked] == []
