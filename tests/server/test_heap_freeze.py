"""The serving process hides its startup heap from the cyclic garbage collector.

Each check runs in a child process: a freeze is for the life of a process, and this
one starts many daemons.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).parents[2]


def _python(code: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_freeze_leaves_a_full_collection_only_what_came_after():
    seen = _python(
        """
        import gc, json
        import remediator.daemon, remediator.cli, remediator.server.app
        from remediator.daemon import freeze_startup_heap
        before = len(gc.get_objects())
        frozen = freeze_startup_heap()
        after = len(gc.get_objects())
        kept = [[i] for i in range(1000)]  # made after the freeze: tracked as usual
        later = len(gc.get_objects())
        print(json.dumps({"before": before, "frozen": frozen, "after": after, "later": later}))
        """
    )
    assert seen["before"] > 20_000  # the imports alone
    assert seen["frozen"] >= seen["before"] * 0.9
    assert seen["after"] < 100  # a full collection would walk only these
    assert seen["later"] >= seen["after"] + 1000


def test_remediator_serve_freezes_its_heap_once_started(tmp_path):
    port = free_port()
    (tmp_path / "rules").mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\nstate: sqlite:///{tmp_path}/state.db\nrules: {tmp_path}/rules\n"
    )
    serving = None
    with subprocess.Popen(
        [sys.executable, "-m", "remediator", "serve", "--config", str(cfg)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as proc:
        try:
            deadline = time.monotonic() + 30
            assert proc.stdout is not None
            while serving is None and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                if '"event":"serving"' in line:
                    serving = json.loads(line)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert serving is not None, "no 'serving' log line"
    assert serving["gc_frozen_objects"] > 20_000
