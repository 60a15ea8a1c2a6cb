"""The wheel users install: the daemon and what it needs at run time, no test fixtures.

The DawsOS schema and seed, the Kubernetes API fake and the moto launcher live in
tests/fixtures; only ``remediator.testing`` (make_alert, make_payload, the capture
pager), which a user's own runbook tests need, ships.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _build_wheel(tmp_path: Path) -> list[str]:
    # Build from a copy so the checkout gets no build/ or egg-info litter.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "remediator", src / "remediator", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("remediator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_holds_the_daemon_and_no_test_fixtures(tmp_path: Path) -> None:
    names = _build_wheel(tmp_path)
    package = [n for n in names if not n.split("/")[0].endswith(".dist-info")]
    assert all(n.startswith("remediator/") for n in package), package
    fixtures = [
        n
        for n in package
        if n.endswith(".sql")
        or "testing_" in n
        or any(word in n.lower() for word in ("dawsos_seed", "fake", "moto"))
    ]
    assert fixtures == []
    # What the daemon reads at run time is there.
    for needed in (
        "remediator/__main__.py",
        "remediator/py.typed",
        "remediator/openapi.yaml",
        "remediator/testing.py",
        "remediator/examples/PricingPackBuildSlow-firing.json",
        "remediator/state/migrations.py",
        "remediator/engine/matchers.py",
    ):
        assert needed in names, needed
