"""The dashboard's vendored browser code is what its npm lock names: `npm ci` from
fleetctl/dashboard/vendor/package-lock.json (npm checks each package's sha512 integrity)
gives byte for byte the files committed under static/vendor/ (what `./dev vendor-js` copies).
Nothing is fetched when the dashboard runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetctl import dashboard

pytestmark = pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
HERE = Path(dashboard.__file__).parent
VENDORED = {
    "hotkeys-js.min.js": "node_modules/hotkeys-js/dist/hotkeys-js.min.js",
    "hotkeys-js.LICENSE": "node_modules/hotkeys-js/LICENSE",
}


def test_the_vendored_files_are_the_locked_packages_files(tmp_path: Path) -> None:
    lock = json.loads((HERE / "vendor" / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/hotkeys-js"]
    assert locked["version"] == "4.1.2" and locked["integrity"].startswith("sha512-")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(HERE / "vendor" / name, tmp_path / name)
    done = subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    for name, installed in VENDORED.items():
        assert (HERE / "static" / "vendor" / name).read_bytes() == (
            tmp_path / installed
        ).read_bytes(), name
    # and only those: nothing else is served from static/vendor/
    assert sorted(p.name for p in (HERE / "static" / "vendor").iterdir()) == sorted(VENDORED)
