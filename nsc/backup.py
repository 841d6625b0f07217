"""Backups of what cannot be re-created: the operator and account keys, with the store.

Losing the operator signing key means a new operator and new credentials for every worker
(the seed article's 60-second outage). A backup is a gzipped tar, mode 0600, laid out like
the nsc directories (`stores/<operator>/...`, `keys/keys/O/..`), so restoring is extracting it
into an empty data dir. User seeds are left out on purpose: users are cheap to re-issue.
Directories of the keystore the caller names (fleetctl's tunnel keys) go in whole. An
existing file is never replaced unless asked.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nsc.authority import Authority
from nsc.errors import NscError
from nsc.fsutil import SECRET_MODE, atomic_write


class BackupExistsError(NscError, FileExistsError):
    """The backup file exists already (pass `replace=True` to overwrite it)."""


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


def backup(
    authority: Authority,
    out_file: Path,
    *,
    keystore_dirs: Sequence[str] = (),
    replace: bool = False,
) -> BackupStatus:
    """Write the backup atomically (0600) and record it in the store metadata."""
    if Path(out_file).exists() and not replace:
        raise BackupExistsError(f"{out_file} already exists")
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
        root = authority.keystore.root
        for name in keystore_dirs:
            for path in sorted((root / name).rglob("*")):
                if path.is_file() and not path.is_symlink():
                    _add(tar, f"keys/{path.relative_to(root)}", path.read_bytes(), now)
    try:
        atomic_write(out_file, buf.getvalue(), SECRET_MODE, durable=True, exclusive=not replace)
    except FileExistsError:
        raise BackupExistsError(f"{out_file} already exists") from None
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
