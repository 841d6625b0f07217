"""The poller's connection names its inboxes and requests at random (poller/inboxes.py)."""

from __future__ import annotations

from nats.aio.client import Client

from poller.inboxes import unpredictable_inboxes


def _ids(nc: Client, n: int) -> list[str]:
    return [nc.new_inbox().split(".", 1)[1] for _ in range(n)]


def test_one_inbox_name_no_longer_predicts_the_next() -> None:
    """nats.py's NUID keeps one prefix and a fixed increment: an inbox name read from the
    monitor port predicted the reply subjects the connection would use next."""
    nc = Client()
    before = _ids(nc, 3)
    assert len({i[:12] for i in before}) == 1  # the shared prefix the attack relied on
    assert unpredictable_inboxes(nc)
    after = _ids(nc, 200)
    assert len({i[:12] for i in after}) == 200 and len({i[-6:] for i in after}) == 200
    assert {len(i) for i in after} == {22} and all(i.isalnum() for i in after)
