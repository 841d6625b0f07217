"""Reading a user JWT's permissions as nats-server does (poller/permissions.py): what the
poller's cancel check and fleetctl's sender check ask before a request the server would
only time out."""

from __future__ import annotations

from poller.permissions import allowed, matches


def test_subject_patterns_match_as_nats_does() -> None:
    assert matches(["$KV.AF_RECORDS.*"], "$KV.AF_RECORDS.t")
    assert matches(["$KV.>"], "$KV.AF_RECORDS.t")
    assert matches([">"], "$KV.AF_RECORDS.t")
    assert not matches(["$KV.AF_RECORDS.*"], "$KV.AF_RECORDS.t.x")
    assert not matches(["$KV.AF_RECORDS"], "$KV.AF_RECORDS.t")
    assert not matches(["$KV.AF_RECORDS.t.>"], "$KV.AF_RECORDS.t")
    assert not matches(["af.worker.*.inbox", "$KV.AF_SPEND.>"], "$KV.AF_RECORDS.t")


def test_a_deny_wins_and_no_allow_list_allows_the_rest() -> None:
    assert allowed({}, "af.result.w1.t")
    assert allowed({"deny": ["af.dead.>"]}, "af.result.w1.t")
    assert not allowed({"deny": ["af.result.>"]}, "af.result.w1.t")
    assert allowed({"allow": ["af.result.w1.*"]}, "af.result.w1.t")
    assert not allowed({"allow": ["af.result.w1.*"]}, "af.result.w2.t")
    assert not allowed({"allow": ["af.>"], "deny": ["af.result.w1.*"]}, "af.result.w1.t")
