"""Run wrk (Debian package ``wrk``) with bench/lua/alerts.lua and read its result.

wrk is the load generator of choice: a separate C process that does not compete
with the daemon for the GIL. The script is the static Lua file with the payload
template from ``bench.payloads`` prepended as Lua globals.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench import payloads

LUA = Path(__file__).resolve().parent / "lua" / "alerts.lua"


def available() -> str | None:
    return shutil.which("wrk")


def write_script(
    path: Path, *, alertname: str, per_payload: int, nonce: int, dupset: int = 0
) -> Path:
    header = payloads.lua_header(
        payloads.template(alertname), per_payload=per_payload, nonce=nonce, dupset=dupset
    )
    path.write_text(header + "\n" + LUA.read_text())
    return path


def run(
    url: str,
    script: Path,
    *,
    connections: int,
    duration: float,
    threads: int = 1,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """One wrk run; returns the script's BENCH_JSON result plus derived rates."""
    exe = available()
    if exe is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    argv = [
        exe,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout:g}s",
        "-s",
        str(script),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
            break
    else:
        raise RuntimeError(f"wrk gave no result (exit {proc.returncode}): {proc.stderr[-2000:]}")
    seconds = result["duration_us"] / 1e6
    ok = result["requests"] - result["non202"]
    result["seconds"] = seconds
    # wrk's own CPU: on a 2-core machine the generator competes with the server.
    result["client_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["rps"] = ok / seconds if seconds else 0.0
    result["p50_ms"] = result["latency_us"]["p50"] / 1000
    result["p99_ms"] = result["latency_us"]["p99"] / 1000
    return result
