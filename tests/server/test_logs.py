"""The JSON log lines `remediator serve` writes: one object per line, secrets redacted,
anything json can write is written (orjson first, json when orjson refuses).

Run in a child process: logs.configure() fixes the configuration of every logger
that logs afterwards, which must not leak into other tests."""

from __future__ import annotations

import json
import re
import subprocess
import sys

SCRIPT = """
from remediator import logs
logs.configure(json=True)
logs.register_secrets(["whk-secret-0123456789"])
log = logs.get("remediator.test")
log.info("first", token="Bearer whk-secret-0123456789", n=20, names=["A"], text="caf\\u00e9")
log.warning("huge", truncated=10**30, keys={1: "one"})
log.debug("hidden")
try:
    raise ValueError("whk-secret-0123456789 in an exception")
except ValueError:
    log.exception("failed")
"""


def test_serve_log_lines_are_json_redacted_and_timestamped() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert "whk-secret-0123456789" not in proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [e["event"] for e in lines] == ["first", "huge", "failed"]
    first, huge, failed = lines
    assert first["token"] == "Bearer **********"
    assert first["text"] == "café" and first["names"] == ["A"] and first["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["timestamp"])
    assert huge["truncated"] == 10**30 and huge["keys"] == {"1": "one"}
    assert "ValueError: **********" in failed["exception"]
