"""Backups of what cannot be re-created: the operator and account keys, with the store.

Losing the operator signing key means a new operator and new credentials for every worker
(the seed article's 60-second outage). A backup is a gzipped tar, mode 0600, laid out like
the nsc directories (`stores/<operator>/...`, `keys/keys/O/..`), so restoring is extracting it
into an empty data dir. User seeds are left out on purpose: users are cheap to re-issue.
"""

from __future__ import annotations

import io
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from nsc.authority import Authority
from nsc.fsutil import SECRET_MODE, atomic_write


@dataclass(frozen=True)
class BackupStatus:
    keys_changed_at: int | None
    last_backup_at: int | None
    last_backup_file: str | None
    missing_keys: tuple[str, ...]  # operator/account public keys not in the last backup

    @property
    def needed(self) -> bool:
        """True while some operator or account key exists that no backup holds."""
        return self.last_backup_at is None or bool(self.missing_keys)


def _add(tar: tarfile.TarFile, arcname: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(arcname)
    info.size, info.mode, info.mtime = len(data), SECRET_MODE, int(mtime)
    tar.addfile(info, io.BytesIO(data))


def backup(authority: Authority, out_file: Path) -> BackupStatus:
    """Write the backup atomically (0600) and record it in the store metadata."""
    now = time.time()
    buf = io.BytesIO()
    keys = sorted(set(authority.operator_and_account_keys()))
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        store_dir = authority.store.dir
        for path in sorted(store_dir.rglob("*")):
            if path.is_file() and (not path.name.startswith(".") or path.name == ".nsc"):
                rel = path.relative_to(store_dir.parent)
                _add(tar, f"stores/{rel}", path.read_bytes(), now)
        for pub in keys:
            if authority.keystore.has(pub):
                rel = authority.keystore.key_path(pub).relative_to(authority.keystore.root)
                _add(tar, f"keys/{rel}", authority.keystore.key_path(pub).read_bytes(), now)
    atomic_write(out_file, buf.getvalue(), SECRET_MODE, durable=True)
    authority.store.update_metadata(
        last_backup_at=int(now),
        last_backup_file=str(Path(out_file).resolve()),
        last_backup_keys=keys,
    )
    return backup_status(authority)


def backup_status(authority: Authority) -> BackupStatus:
    meta = authority.store.metadata()
    saved = set(meta.get("last_backup_keys") or ())
    missing = tuple(sorted(set(authority.operator_and_account_keys()) - saved))
    return BackupStatus(
        keys_changed_at=meta.get("keys_changed_at"),
        last_backup_at=meta.get("last_backup_at"),
        last_backup_file=meta.get("last_backup_file"),
        missing_keys=missing,
    )
