"""Several ``remediator serve`` processes sharing one Postgres state store.

The reliability tests run the daemon exactly as production does: real subprocesses
(``python -m remediator serve --config FILE``), each on its own free loopback port,
all pointed at one Postgres schema as the state store. A test can kill -9, SIGTERM
and restart any of them, deliver webhooks like Alertmanager does, and wait until
the cluster has finished its work.

    cluster = Cluster(tmp_path, state_dsn, rules_yaml=..., targets=..., replicas=3)
    await cluster.start_all()
    sender = Sender(cluster, client)
    await sender.send(0, [alert, ...])          # 202s are remembered per occurrence
    cluster.kill(0); await cluster.start(0)     # kill -9, restart on the same port
    await settle(state_dsn)                     # journal drained, no run in flight
    await cluster.close()

Bench runbook (how to use this for a manual run or a benchmark): ``_bench.py`` builds
the target world (the shipped RB-02/RB-03 against a fresh DawsOS database), the
tests in this folder show the whole sequence, and ``tools/reliability_report.py``
runs them and prints the figures. Each replica's JSON log is ``replica-N.log`` in
the test's tmp directory (kept on failure by pytest's tmp_path retention).

This module never sends anything off loopback and never signals a process it did
not start (it keeps each child's ``Popen`` and signals only that pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from remediator.models import canonical_time
from remediator.testing import make_payload
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_TOKEN = "reliability-webhook-token-0123456789"
OPERATOR = "ops"
OPERATOR_TOKEN = "reliability-operator-token-9876543210"
# Log events that mean the daemon hit an internal error (never expected in these tests).
INTERNAL_ERRORS = (
    "occurrence_failed",
    "step_crashed",
    "maintenance_failed",
    "loop_crashed",
    "background_failed",
)


@dataclass
class Replica:
    index: int
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def owner_like(self) -> str:
        """A LIKE pattern for the ``owner`` column of this process's runs."""
        return f"%:{self.pid}:%"


class Cluster:
    def __init__(
        self,
        workdir: Path,
        state_dsn: str,
        *,
        rules_yaml: str,
        targets: Mapping[str, Any],
        replicas: int = 3,
        engine: Mapping[str, Any] | None = None,
        workers: int = 8,
        pagers: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.state_dsn = state_dsn
        self.rules = workdir / "rules.yaml"
        self.rules.write_text(rules_yaml)
        self.targets = dict(targets)
        # Short leases: a killed replica's runs are taken over within seconds.
        self.engine = {"lease": "2s", "poll_interval": "0.2s", **(engine or {})}
        self.workers = workers
        self.pagers = dict(pagers or {})  # e.g. a PagerDuty url on a capture server
        self.replicas = [
            Replica(i, free_port(), workdir / f"replica-{i}.yaml", workdir / f"replica-{i}.log")
            for i in range(replicas)
        ]
        for r in self.replicas:
            r.config.write_text(yaml.safe_dump(self._config(r)))

    def _config(self, r: Replica) -> dict[str, Any]:
        return {
            "listen": f"127.0.0.1:{r.port}",
            "mode": "live",
            "rules": str(self.rules),
            "state": self.state_dsn,
            "auth": {
                "webhook_tokens": [WEBHOOK_TOKEN],
                "operator_tokens": {OPERATOR: OPERATOR_TOKEN},
            },
            "limits": {"workers": self.workers},
            "targets": self.targets,
            "engine": self.engine,
            **({"pagers": self.pagers} if self.pagers else {}),
        }

    # ------------------------------------------------------------- processes

    def spawn(self, i: int) -> None:
        r = self.replicas[i]
        assert not r.alive, f"replica {i} is already running"
        env = {k: v for k, v in os.environ.items() if k != "REMEDIATOR_CONFIG"}
        env["PYTHONPATH"] = str(ROOT)
        with r.log.open("ab") as log:
            log.write(f'{{"event": "test_spawn", "replica": {i}}}\n'.encode())
            log.flush()
            r.proc = subprocess.Popen(
                [sys.executable, "-m", "remediator", "serve", "--config", str(r.config)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        r.starts += 1
        r.pids.append(r.proc.pid)

    async def wait_ready(self, i: int, timeout: float = 30.0) -> None:
        r = self.replicas[i]
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as c:
            while time.monotonic() < deadline:
                if not r.alive:
                    raise AssertionError(f"replica {i} exited at start:\n{self.tail(i)}")
                with contextlib.suppress(httpx.TransportError):
                    if (await c.get(r.url + "/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise AssertionError(f"replica {i} not ready after {timeout}s:\n{self.tail(i)}")

    async def start(self, i: int) -> None:
        self.spawn(i)
        await self.wait_ready(i)

    async def start_all(self) -> None:
        for i in range(len(self.replicas)):
            self.spawn(i)
        await asyncio.gather(*(self.wait_ready(i) for i in range(len(self.replicas))))

    def kill(self, i: int) -> int:
        """kill -9 replica i (and reap it); returns the pid that died."""
        r = self.replicas[i]
        assert r.proc is not None and r.alive, f"replica {i} is not running"
        pid = r.proc.pid
        r.proc.send_signal(signal.SIGKILL)
        r.proc.wait()
        return pid

    def freeze(self, i: int) -> None:
        """SIGSTOP replica i: a process that stalls (CPU starved, paused VM) but lives."""
        r = self.replicas[i]
        assert r.proc is not None and r.alive, f"replica {i} is not running"
        r.proc.send_signal(signal.SIGSTOP)

    def thaw(self, i: int) -> None:
        r = self.replicas[i]
        assert r.proc is not None
        r.proc.send_signal(signal.SIGCONT)

    async def terminate(self, i: int, timeout: float = 30.0) -> int:
        """SIGTERM replica i and wait for it to exit; returns its exit code."""
        r = self.replicas[i]
        assert r.proc is not None and r.alive, f"replica {i} is not running"
        r.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while r.proc.poll() is None:
            if time.monotonic() > deadline:
                r.proc.kill()
                r.proc.wait()
                raise AssertionError(f"replica {i} ignored SIGTERM for {timeout}s")
            await asyncio.sleep(0.05)
        return int(r.proc.returncode)

    async def close(self) -> None:
        for r in self.replicas:
            if r.proc is not None and r.proc.poll() is None:
                r.proc.send_signal(signal.SIGKILL)
                r.proc.wait()

    # ------------------------------------------------------------------ logs

    def tail(self, i: int, n: int = 30) -> str:
        try:
            lines = self.replicas[i].log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every replica (non-JSON lines as {"event": "raw"})."""
        out: list[dict[str, Any]] = []
        for r in self.replicas:
            if not r.log.exists():
                continue
            for line in r.log.read_text(errors="replace").splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = {"event": "raw", "line": line}
                if isinstance(ev, dict):
                    ev["replica"] = r.index
                    out.append(ev)
        return out

    def internal_errors(self) -> list[str]:
        """Log lines that show an internal error or an unexpected traceback."""
        bad = []
        for ev in self.events():
            name = ev.get("event")
            if name in INTERNAL_ERRORS or (name == "raw" and "Traceback" in ev["line"]):
                bad.append(json.dumps(ev)[:400])
        return bad

    def count_events(self, name: str) -> int:
        return sum(1 for ev in self.events() if ev.get("event") == name)

    # -------------------------------------------------------------- operator

    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


Key = tuple[str, str, str]  # (fingerprint, startsAt, status): the journal's key


def key_of(alert: Mapping[str, Any]) -> Key:
    return (alert["fingerprint"], canonical_time(alert["startsAt"]), alert["status"])


class Sender:
    """Delivers webhook payloads the way Alertmanager does, and remembers the 202s.

    A 5xx or a connection error is retried with a short backoff (Alertmanager retries
    within its flush deadline); a replica that is down is tried again until
    ``deadline`` seconds have passed, then the next replica is tried.
    """

    def __init__(self, cluster: Cluster, client: httpx.AsyncClient) -> None:
        self.cluster = cluster
        self.client = client
        self.accepted: set[Key] = set()
        self.statuses: Counter[str] = Counter()
        self.requests = 0
        self.delivered = 0  # alert copies answered 202 (duplicates included)
        self.undelivered: list[Sequence[Mapping[str, Any]]] = []

    async def post(self, i: int, alerts: Sequence[Mapping[str, Any]]) -> int | None:
        """One attempt; the status code, or None when the connection failed."""
        r = self.cluster.replicas[i]
        self.requests += 1
        try:
            resp = await self.client.post(
                r.url + "/api/v1/alerts",
                json=make_payload(*alerts),
                headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            )
        except httpx.TransportError as exc:
            self.statuses[type(exc).__name__] += 1
            return None
        self.statuses[str(resp.status_code)] += 1
        if resp.status_code == 202:
            self.delivered += len(alerts)
            self.accepted.update(key_of(a) for a in alerts)
        return resp.status_code

    async def send(
        self, i: int, alerts: Sequence[Mapping[str, Any]], *, deadline: float = 15.0
    ) -> bool:
        """Deliver to replica i, retrying; fall over to the others after ``deadline``."""
        order = [i] + [j for j in range(len(self.cluster.replicas)) if j != i]
        for j in order:
            until = time.monotonic() + deadline
            delay = 0.05
            while time.monotonic() < until:
                status = await self.post(j, alerts)
                if status == 202:
                    return True
                if status is not None and status < 500:
                    raise AssertionError(f"replica {j} answered {status} to a valid payload")
                await asyncio.sleep(delay + random.random() * delay)
                delay = min(1.0, delay * 2)
        self.undelivered.append(alerts)
        return False


async def settle(
    state_dsn: str, *, timeout: float = 60.0, deferred_undo_ok: bool = False
) -> dict[str, int]:
    """Wait until the journal is drained and no run is in flight; returns the counts.

    Settled means, twice in a row: no occurrence pending or processing, no run
    ``running`` or ``undoing``, no step ``started``, and (unless ``deferred_undo_ok``,
    for tests that hold undos back with the kill switch) no resolved run whose undo has
    not started.
    """
    conn = await asyncpg.connect(state_dsn, timeout=5)
    try:
        deadline = time.monotonic() + timeout
        quiet = 0
        counts: dict[str, int] = {}
        while True:
            row = await conn.fetchrow(
                "SELECT"
                " (SELECT count(*) FROM occurrences WHERE state IN ('pending', 'processing'))"
                "   AS journal,"
                " (SELECT count(*) FROM runs WHERE state IN ('running', 'undoing')) AS runs,"
                " (SELECT count(*) FROM steps WHERE state = 'started') AS steps,"
                " (SELECT count(*) FROM runs WHERE state = 'waiting'"
                "   AND undo_state = 'requested') AS undo,"
                " (SELECT count(*) FROM approvals WHERE state IN ('approved', 'executing'))"
                "   AS approvals"
            )
            assert row is not None
            counts = dict(row)
            busy = counts["journal"] + counts["runs"] + counts["steps"] + counts["approvals"]
            if not deferred_undo_ok:
                busy += counts["undo"]
            quiet = quiet + 1 if busy == 0 else 0
            if quiet >= 2:
                return counts
            if time.monotonic() > deadline:
                stuck = await conn.fetch(
                    "SELECT r.id, r.state AS run_state, r.undo_state, s.phase, s.name,"
                    " s.attempts FROM steps s JOIN runs r ON r.id = s.run_id"
                    " WHERE s.state = 'started' LIMIT 10"
                )
                raise AssertionError(
                    f"cluster did not settle in {timeout}s: {counts};"
                    f" steps left started: {[dict(r) for r in stuck]}"
                )
            await asyncio.sleep(0.25)
    finally:
        await conn.close()


SOAK = os.environ.get("REMEDIATOR_SOAK") == "1"


def soak_marks(timeout: float | None = None) -> list[Any]:
    """Marks for a long variant: ``soak``, skipped unless REMEDIATOR_SOAK=1, and its
    own ``timeout`` when given (put it here, not on the function: the function's mark
    would win over the parameter's).

    The default run (and CI) runs the short variant of every scenario; the report
    command runs the long ones too. The skip reason says how to run them.
    """
    marks: list[Any] = [
        pytest.mark.soak,
        pytest.mark.skipif(
            not SOAK, reason="soak variant: REMEDIATOR_SOAK=1 or tools/reliability_report.py"
        ),
    ]
    if timeout is not None:
        marks.append(pytest.mark.timeout(timeout))
    return marks
