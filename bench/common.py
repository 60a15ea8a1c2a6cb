"""Plumbing shared by the scenarios: free ports, child processes, /proc readings,
Postgres schemas, percentiles and Prometheus histogram quantiles.

Every process the bench starts is a ``Child``: started here, stopped here, by its
own pid (never by name). Nothing here talks to any address but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
PG_DSN = os.environ.get(
    "REMEDIATOR_BENCH_PG",
    os.environ.get("REMEDIATOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces; the fields we want follow its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of the resident set (VmHWM): the exact peak."""
    return _status_kb(pid, "VmHWM") / 1024


# ------------------------------------------------------------------- processes


@dataclass
class Child:
    """A process the bench started; its output goes to ``log``."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO
    proc: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = None

    def start(self) -> Child:
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._out is not None:
            self._out.close()
            self._out = None
        return self.proc.returncode


def wait_http(url: str, child: Child, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail early if the child died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited during start-up:\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{child.name} not ready at {url} after {timeout} s ({last})")


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
    return body.decode()


# -------------------------------------------------------------------- Postgres


def pg_reachable(dsn: str = PG_DSN) -> str | None:
    """None when Postgres answers, else why not."""

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def with_search_path(dsn: str, schema: str) -> str:
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}search_path={schema}"


async def pg_exec(sql: str, *args: Any, dsn: str = PG_DSN) -> str:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        status: str = await conn.execute(sql, *args)
        return status
    finally:
        await conn.close()


async def pg_fetch(sql: str, *args: Any, dsn: str = PG_DSN) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def new_schema(prefix: str) -> str:
    """Create a fresh, empty schema; returns its name (ours: never from input)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(pg_exec(f'CREATE SCHEMA "{name}"'))
    return name


def drop_schema(name: str) -> None:
    asyncio.run(pg_exec(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


# ------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket.

    ``buckets`` are (upper bound, cumulative count), +Inf included.
    """
    b = sorted(buckets)
    if not b or b[-1][1] == 0:
        return math.nan
    total = b[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in b:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # Prometheus answers the highest finite bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound
