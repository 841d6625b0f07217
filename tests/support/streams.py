"""Every JetStream stream fleetctl declares, in declaration order: written out here (not
read from the code) so that tests notice a stream added, renamed or dropped."""

from __future__ import annotations

EVERY_STREAM = (
    "AF_TASKS",
    "AF_RESULTS",
    "AF_DEAD",
    "KV_AF_LEASES",
    "KV_AF_SPEND",
    "KV_AF_RECORDS",
    "KV_AF_JUDGMENTS",
    "KV_AF_CANCELS",
)
