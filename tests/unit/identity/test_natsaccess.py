"""Per-user permissions derived from NatsNames: exact lists, and nothing broad."""

from __future__ import annotations

from pathlib import Path

from fleetctl.bus.names import NatsNames
from fleetctl.identity import natsaccess as na
from nsc import jwt
from nsc.authority import Authority
from nsc.permissions import Permission, Permissions
from nsc.store import NscDirs
from tests.support.streams import EVERY_STREAM

N = NatsNames("af")


def test_worker_permissions_are_exact() -> None:
    p = na.worker_permissions(N, "w1")
    assert p.pub.allow == (
        "$JS.API.CONSUMER.MSG.NEXT.AF_TASKS.worker-w1",
        "$JS.ACK.AF_TASKS.worker-w1.>",
        "$JS.API.CONSUMER.INFO.AF_TASKS.worker-w1",
        "$JS.API.DIRECT.GET.AF_RESULTS.af.result.w1.*",
        "af.result.w1.*",
        "$KV.AF_LEASES.w1.>",
        "$JS.API.DIRECT.GET.KV_AF_LEASES.$KV.AF_LEASES.w1.>",
        "af.dead.w1",
        "af.worker.w1.status",
        "$KV.AF_SPEND.worker.w1.>",
        "$JS.API.DIRECT.GET.KV_AF_SPEND.$KV.AF_SPEND.worker.w1.>",
        "$KV.AF_SPEND.fleet.>",
        "$JS.API.DIRECT.GET.KV_AF_SPEND.$KV.AF_SPEND.fleet.>",
        "$JS.API.DIRECT.GET.KV_AF_CANCELS.$KV.AF_CANCELS.w1.*",
    )
    assert p.sub.allow == ("_INBOX_w1.>", "af.worker.w1.ping", "$KV.AF_CANCELS.w1.*")
    assert p.resp is not None and p.resp.max_msgs == 1


def test_no_worker_gets_the_seed_broad_grants() -> None:
    for wid in ("w1", "cc-go-dev-01"):
        p = na.worker_permissions(N, wid)
        every = p.pub.allow + p.sub.allow
        for broad in ("af.>", "_INBOX.>", "$JS.>", "$JS.API.>", ">"):
            assert broad not in every
        admin = (
            "STREAM.CREATE",
            "STREAM.DELETE",
            "STREAM.UPDATE",
            "STREAM.PURGE",
            "STREAM.NAMES",
            "STREAM.LIST",
            "STREAM.MSG.DELETE",
            "CONSUMER.CREATE",
            "CONSUMER.DELETE",
        )
        assert not any(a in s for a in admin for s in every)
        assert not any(s.startswith("af.worker.") and s.endswith(".inbox") for s in every)
        # results only on its own subjects, read back only from them
        assert [s for s in every if ".result." in s] == [
            f"$JS.API.DIRECT.GET.AF_RESULTS.af.result.{wid}.*",
            f"af.result.{wid}.*",
        ]
        assert not any("MSG.GET" in s for s in every)
        # leases only under its own id: it cannot take, refresh or free another's
        assert [s for s in every if "LEASES" in s] == [
            f"$KV.AF_LEASES.{wid}.>",
            f"$JS.API.DIRECT.GET.KV_AF_LEASES.$KV.AF_LEASES.{wid}.>",
        ]
        # task records: nothing at all (whom a task was sent to is the publisher's word)
        assert not [s for s in every if "RECORDS" in s]
        # cancel marks: read its own (a direct get, and the write seen as it is stored);
        # it writes none, and reads no other worker's
        assert [s for s in p.pub.allow if "CANCELS" in s] == [
            f"$JS.API.DIRECT.GET.KV_AF_CANCELS.$KV.AF_CANCELS.{wid}.*"
        ]
        assert [s for s in p.sub.allow if "CANCELS" in s] == [f"$KV.AF_CANCELS.{wid}.*"]
        # spend: its own daily counter, and the fleet's it adds to
        assert [s for s in every if "SPEND" in s] == [
            f"$KV.AF_SPEND.worker.{wid}.>",
            f"$JS.API.DIRECT.GET.KV_AF_SPEND.$KV.AF_SPEND.worker.{wid}.>",
            "$KV.AF_SPEND.fleet.>",
            "$JS.API.DIRECT.GET.KV_AF_SPEND.$KV.AF_SPEND.fleet.>",
        ]


def test_result_subjects_carry_the_worker_and_attribute_by_subject() -> None:
    assert N.result("w1", "t-1") == "af.result.w1.t-1"
    assert N.all_results == "af.result.*.*"
    assert N.attribution("af.result.w1.t-1") == ("w1", "t-1")
    for other in ("af.result.w1", "af.result.w1.t.x", "ag.result.w1.t", "af.task.t.completed"):
        assert N.attribution(other) is None


def test_a_worker_may_pull_from_the_shared_queues_it_belongs_to_and_no_other() -> None:
    mine = na.worker_permissions(N, "w1", ("go",))
    assert "$JS.API.CONSUMER.MSG.NEXT.AF_TASKS.route-go" in mine.pub.allow
    assert "$JS.ACK.AF_TASKS.route-go.>" in mine.pub.allow
    assert not [s for s in na.worker_permissions(N, "w1").pub.allow if "route-" in s]


def test_prefix_changes_every_subject() -> None:
    p = na.worker_permissions(NatsNames("team-x"), "w1")
    assert "$JS.API.CONSUMER.MSG.NEXT.TEAM_X_TASKS.worker-w1" in p.pub.allow
    assert "team-x.result.w1.*" in p.pub.allow


def test_publisher_and_admin() -> None:
    pub = na.publisher_permissions(N)
    assert pub.pub.allow == (
        "af.worker.*.inbox",
        "af.route.*.inbox",
        "$KV.AF_RECORDS.*",
        "$JS.API.DIRECT.GET.KV_AF_RECORDS",
        "$JS.API.DIRECT.GET.KV_AF_RECORDS.$KV.AF_RECORDS.*",
        "$KV.AF_CANCELS.*.*",
        "$JS.API.DIRECT.GET.KV_AF_CANCELS.$KV.AF_CANCELS.*.*",
        "$JS.API.STREAM.MSG.GET.AF_RESULTS",
        "$JS.API.DIRECT.GET.AF_RESULTS",
        "$JS.API.DIRECT.GET.AF_RESULTS.>",
        "$JS.API.CONSUMER.INFO.AF_TASKS.*",
        "af.worker.*.ping",
        "$JS.API.STREAM.MSG.GET.AF_TASKS",
        "$JS.API.STREAM.MSG.GET.AF_DEAD",
        "$JS.API.STREAM.PURGE.AF_DEAD",
        "$JS.API.DIRECT.GET.KV_AF_JUDGMENTS",
        "$JS.API.DIRECT.GET.KV_AF_JUDGMENTS.$KV.AF_JUDGMENTS.*.*",
    )  # no consumer of its own, no pull or ack: results by direct get
    assert pub.sub.allow == ("_INBOX_PUBLISHER.>", "af.worker.*.status")
    adm = na.admin_permissions(N)
    assert adm.pub.allow == (
        "$JS.API.INFO",
        *(f"$JS.API.STREAM.{op}.{s}" for s in EVERY_STREAM for op in ("INFO", "CREATE", "UPDATE")),
        "$JS.API.CONSUMER.LIST.AF_TASKS",
        "$JS.API.CONSUMER.NAMES.AF_TASKS",
        "$JS.API.CONSUMER.INFO.AF_TASKS.*",
        "$JS.API.CONSUMER.CREATE.AF_TASKS.*",
        "$JS.API.CONSUMER.DELETE.AF_TASKS.*",
        "$JS.API.CONSUMER.CREATE.AF_TASKS.*.af.worker.*.inbox",
        "$JS.API.DIRECT.GET.KV_AF_SPEND.$KV.AF_SPEND.>",
        "af.worker.*.ping",
    )
    assert adm.pub.deny == ()
    # admin manages the records bucket but reads no record: status does not need them
    assert [s for s in adm.pub.allow if "RECORDS" in s] == [
        f"$JS.API.STREAM.{op}.KV_AF_RECORDS" for op in ("INFO", "CREATE", "UPDATE")
    ]
    assert adm.sub.allow == ("_INBOX_ADMIN.>", "af.worker.*.status")


def test_the_dashboard_reads_follows_and_judges_but_changes_no_work() -> None:
    dash = na.dashboard_permissions(N)
    assert dash.pub.allow == (
        "$JS.API.INFO",
        *(
            f"$JS.API.STREAM.INFO.{s}"
            for s in EVERY_STREAM
            if s != "KV_AF_CANCELS"  # every stream's info but the cancel marks'
        ),
        "$JS.API.DIRECT.GET.KV_AF_RECORDS",
        "$JS.API.DIRECT.GET.KV_AF_RECORDS.$KV.AF_RECORDS.*",
        "$JS.API.DIRECT.GET.AF_RESULTS",
        "$JS.API.DIRECT.GET.AF_RESULTS.>",
        "$JS.API.STREAM.MSG.GET.AF_RESULTS",
        "$JS.API.CONSUMER.INFO.AF_TASKS.*",
        "$JS.API.STREAM.MSG.GET.AF_TASKS",
        "$JS.API.STREAM.MSG.GET.AF_DEAD",
        "$JS.API.DIRECT.GET.KV_AF_SPEND.$KV.AF_SPEND.>",
        "af.worker.*.ping",
        "$KV.AF_JUDGMENTS.*.*",
        "$JS.API.DIRECT.GET.KV_AF_JUDGMENTS",
        "$JS.API.DIRECT.GET.KV_AF_JUDGMENTS.$KV.AF_JUDGMENTS.*.*",
    )
    assert dash.sub.allow == (
        "_INBOX_DASHBOARD.>",
        "af.result.*.*",
        "$KV.AF_RECORDS.*",
        "$KV.AF_JUDGMENTS.*.*",
        "af.worker.*.status",
    )
    # judgments are the dashboard's alone: no worker, nor the publisher, may write one
    for perms in (na.worker_permissions(N, "w1"), na.publisher_permissions(N)):
        assert not [s for s in perms.pub.allow if s.startswith("$KV.AF_JUDGMENTS")]


def test_user_names_cannot_collide() -> None:
    assert na.worker_user("w1") == "worker-w1"
    assert na.worker_of_user("worker-w1") == "w1"
    assert na.worker_of_user(na.ADMIN_USER) is None
    # worker ids are [a-z0-9-]: upper case in the other prefixes keeps them apart
    for prefix in (
        na.ADMIN_INBOX_PREFIX,
        na.PUBLISHER_INBOX_PREFIX,
        na.SYSTEM_INBOX_PREFIX,
        na.DASHBOARD_INBOX_PREFIX,
    ):
        assert prefix != prefix.lower()


def test_ensure_fleet_users_is_idempotent_and_lists(tmp_path: Path) -> None:
    a = Authority.create(NscDirs.under(tmp_path))
    config = a.server_config()
    first = na.ensure_fleet_users(a, N, ["w1", "w2"], ttl=3600)
    assert set(first) == {
        "worker-w1",
        "worker-w2",
        na.PUBLISHER_USER,
        na.ADMIN_USER,
        na.DASHBOARD_USER,
        na.SYSTEM_USER,
    }
    assert first[na.SYSTEM_USER].account == "SYS"
    assert na.ensure_fleet_users(a, N, ["w1", "w2"]) == {}
    assert a.server_config() == config  # issuing never touches the broker config
    a.revoke_user("worker-w1")
    again = na.ensure_fleet_users(a, N, ["w1", "w2", "w3"])
    assert set(again) == {"worker-w1", "worker-w3"}
    rows = {r.user: r for r in na.credential_rows(a)}
    assert rows["worker-w2"].worker == "w2" and rows[na.ADMIN_USER].worker is None
    assert rows["worker-w2"].expires_at == rows["worker-w2"].issued_at + 3600
    assert not rows["worker-w1"].revoked  # the re-issued key, not the revoked one
    tags = jwt.decode(first["worker-w2"].jwt).claims["nats"]["tags"]
    assert tags == [na.ROLE_WORKER]


def test_outdated_permissions_are_found_and_service_users_rotated(tmp_path: Path) -> None:
    """Users issued before a permission change (the admin's old `$JS.API.>`, a worker's old
    shared result subject) are listed; the admin and publisher are rotated, old key revoked."""
    a = Authority.create(NscDirs.under(tmp_path))
    na.ensure_fleet_users(a, N, ["w1"])
    assert na.outdated_users(a, N, ["w1"]) == []
    old = Permissions(pub=Permission.of(allow=["$JS.API.>"]))
    old_admin = a.issue_user(na.ADMIN_USER, old)
    a.issue_user(
        na.worker_user("w1"), Permissions(pub=Permission.of(allow=["af.task.*.completed"]))
    )
    assert sorted(na.outdated_users(a, N, ["w1"])) == [na.ADMIN_USER, "worker-w1"]
    issued = na.ensure_fleet_users(a, N, ["w1"])
    assert set(issued) == {na.ADMIN_USER}  # workers are rotated by `creds rotate`
    assert na.outdated_users(a, N, ["w1"]) == ["worker-w1"]
    revoked = jwt.decode(a.account_jwt(a.services_account)).claims["nats"]["revocations"]
    assert old_admin.public_key in revoked
    assert na.ensure_fleet_users(a, N, ["w1"]) == {}  # nothing more to do


def test_a_publisher_issued_before_task_records_is_outdated_and_rotated(tmp_path: Path) -> None:
    """The previous version's publisher could not write task records, nor its admin create
    their bucket: `plan` lists both (`outdated_users`, the warning), and `creds init`
    (`apply --issue-creds`, `up`) rotate them."""
    a = Authority.create(NscDirs.under(tmp_path))
    na.ensure_fleet_users(a, N, [])
    olds = []
    for user, current in (
        (na.PUBLISHER_USER, na.publisher_permissions(N)),
        (na.ADMIN_USER, na.admin_permissions(N)),
    ):
        before = Permissions(
            pub=Permission.of(allow=[s for s in current.pub.allow if "RECORDS" not in s]),
            sub=current.sub,
        )
        olds.append(a.issue_user(user, before))
    assert sorted(na.outdated_users(a, N, [])) == [na.ADMIN_USER, na.PUBLISHER_USER]
    assert set(na.ensure_fleet_users(a, N, [])) == {na.ADMIN_USER, na.PUBLISHER_USER}
    assert na.outdated_users(a, N, []) == []
    revoked = jwt.decode(a.account_jwt(a.services_account)).claims["nats"]["revocations"]
    assert all(old.public_key in revoked for old in olds)
