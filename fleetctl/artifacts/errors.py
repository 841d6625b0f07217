"""The one error of the artifacts fleetctl ships: a wheelhouse, a lock, an LLM CLI install or
bundle, the nats-server binary that cannot be built, found or verified.

One type, so callers need not know which artifact failed: the CLI prints its message as one
`error: ...` line and exits 1, and apply reports it as the failure of that host's upload.
"""

from __future__ import annotations


class ArtifactError(Exception):
    """An artifact cannot be built, found or verified; the message says what and how to fix it."""


class Tampered(ArtifactError):
    """An artifact on this machine differs from what its lock records: something changed it
    after it was made, so it is never used or shipped (the message says how to recover)."""
