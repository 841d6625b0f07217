"""`apply --issue-creds` renews credentials that are about to expire (a fleet with a ttl)."""

from __future__ import annotations

import dataclasses

from fleetctl.config.model import CredsConfig
from fleetctl.identity import credentials
from tests.support.example import example_fleet


def test_expiring_credentials_are_renewed_and_others_kept() -> None:
    fleet = dataclasses.replace(example_fleet(), creds=CredsConfig(ttl=600, expiry_warning=3600))
    authority, _ = credentials.init(fleet)
    credentials.issue(fleet, authority, ["cc-go-dev-01", "codex-py-dev-01"])
    before = {r.name: r.public_key for r in authority.list_users()}
    renewed = credentials.renew_expiring(fleet, authority, ["cc-go-dev-01"])
    assert renewed == ["worker-cc-go-dev-01"]
    after = {r.name: r.public_key for r in authority.list_users()}
    assert after["worker-cc-go-dev-01"] != before["worker-cc-go-dev-01"]
    assert after["worker-codex-py-dev-01"] == before["worker-codex-py-dev-01"]

    relaxed = dataclasses.replace(fleet, creds=CredsConfig(ttl=600, expiry_warning=60))
    assert credentials.renew_expiring(relaxed, authority, ["cc-go-dev-01"]) == []
