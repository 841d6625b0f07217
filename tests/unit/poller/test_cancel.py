"""A poller knows from its own creds whether it may read its cancel marks (poller/cancel.py):
creds issued before cancels existed make it run tasks unchecked, instead of waiting on a
request the server refuses for every task. The JWTs here carry exactly the permissions
fleetctl issues (fleetctl/identity/natsaccess.py), old and new."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from fleetctl.bus.names import NatsNames
from fleetctl.identity import natsaccess as na
from nsc.permissions import Permission, Permissions
from poller import cancel

N = NatsNames("af")
KEY, STREAM = N.cancel("w1", "x"), N.cancel_stream


def _creds(tmp_path: Path, perms: Permissions) -> Path:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    token = f"{b64({'typ': 'JWT'})}.{b64({'nats': perms.to_jwt()})}.sig"
    path = tmp_path / "w1.creds"
    path.write_text(
        f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\nSUAXXX\n------END USER NKEY SEED------\n"
    )
    return path


def test_creds_issued_now_may_read_their_own_marks_and_no_one_elses(tmp_path: Path) -> None:
    creds = _creds(tmp_path, na.worker_permissions(N, "w1"))
    assert cancel.permitted(creds, KEY, STREAM)
    assert not cancel.permitted(creds, N.cancel("w2", "x"), STREAM)


def test_creds_issued_before_cancels_may_not(tmp_path: Path) -> None:
    now = na.worker_permissions(N, "w1")
    old = Permissions(
        pub=Permission.of(allow=[s for s in now.pub.allow if "CANCELS" not in s]),
        sub=Permission.of(allow=[s for s in now.sub.allow if "CANCELS" not in s]),
        resp=now.resp,
    )
    assert not cancel.permitted(_creds(tmp_path, old), KEY, STREAM)


def test_no_creds_or_unreadable_ones_leave_it_to_the_server(tmp_path: Path) -> None:
    assert cancel.permitted(None, KEY, STREAM)
    junk = tmp_path / "junk.creds"
    junk.write_text("not a creds file")
    assert cancel.permitted(junk, KEY, STREAM)
