"""Drive load at a server with wrk, or with bench.loadgen in its own process.

Both return the same keys: rps (202s per second), requests, non202, journaled,
duplicates, p50_ms, p99_ms, seconds, client_cpu_s; ``server_cpu_s`` is the CPU the
server process used during the measured window (from /proc).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import orjson

from bench import common, wrk


def new_nonce() -> int:
    return random.getrandbits(32)


class Loadgen:
    """bench.loadgen running as a child process; ``wait`` returns its result."""

    def __init__(self, spec: dict[str, Any], workdir: Path, name: str) -> None:
        self.name = name
        self.spec = {**spec, "out": str(workdir / f"{name}.result.json")}
        spec_path = workdir / f"{name}.spec.json"
        spec_path.write_bytes(orjson.dumps(self.spec))
        self.child = common.Child(
            f"loadgen {name}",
            [common.PYTHON, "-m", "bench.loadgen", str(spec_path)],
            workdir / f"{name}.loadgen.log",
        ).start()

    def wait(self) -> dict[str, Any]:
        assert self.child.proc is not None
        budget = float(self.spec.get("duration") or 0) + 600
        if self.spec.get("start_at"):
            budget += max(0.0, float(self.spec["start_at"]) - time.time())
        try:
            code = self.child.proc.wait(timeout=budget)
        finally:
            self.child.stop()
        if code != 0:
            raise RuntimeError(f"loadgen {self.name} failed (exit {code}):\n{self.child.tail()}")
        result: dict[str, Any] = orjson.loads(Path(self.spec["out"]).read_bytes())
        return result

    def stop(self) -> None:
        self.child.stop()


def loadgen(spec: dict[str, Any], workdir: Path, name: str) -> dict[str, Any]:
    """Run bench.loadgen as a child process and return its result."""
    return Loadgen(spec, workdir, name).wait()


def closed_load(
    url: str,
    *,
    server_pid: int,
    workdir: Path,
    name: str,
    alertname: str,
    per_payload: int,
    connections: int,
    seconds: float,
    dupset: int = 0,
    use_wrk: bool = True,
) -> dict[str, Any]:
    """Closed-loop load for ``seconds`` at ``connections`` connections."""
    nonce = new_nonce()
    cpu0 = common.cpu_seconds(server_pid)
    if use_wrk:
        script = wrk.write_script(
            workdir / f"{name}.lua",
            alertname=alertname,
            per_payload=per_payload,
            nonce=nonce,
            dupset=dupset,
        )
        result = wrk.run(url, script, connections=connections, duration=seconds)
        result["generator"] = "wrk"
    else:
        if dupset:
            raise ValueError("the duplicate-heavy intake mode needs wrk")
        spec = {
            "url": url,
            "mode": "closed",
            "connections": connections,
            "duration": seconds,
            "plan": {
                "kind": "distinct",
                "alertname": alertname,
                "per_payload": per_payload,
                "nonce": nonce,
            },
        }
        result = loadgen(spec, workdir, name)
        result["generator"] = "python"
    result["server_cpu_s"] = common.cpu_seconds(server_pid) - cpu0
    result["alerts_per_s"] = result["rps"] * per_payload
    return result
