"""A load generator in its own process: aiohttp client, uvloop, pre-built bodies.

Used where wrk does not fit: the fixed-rate storm of the time-to-mitigation
scenario (open loop: request i leaves at t0 + i/rate whatever the replies, and its
wall-clock send time is recorded per fingerprint) and the storm of exact counts
with duplicates (closed loop, as fast as the daemon answers, every reply's
journaled/duplicates counts summed). Also the fallback for the intake scenario
when wrk is not installed.

    python -m bench.loadgen SPEC.json   # writes the result JSON to spec["out"]

It only ever sends to the URL in the spec, which the bench sets to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson

from bench import payloads
from bench.common import percentile


def batches(plan: dict[str, Any]) -> Iterator[list[str]]:
    if plan["kind"] == "distinct":
        return payloads.distinct_batches(plan["nonce"], plan.get("stream", 0), plan["per_payload"])
    if plan["kind"] == "storm":
        planned, _ = payloads.storm_plan(
            plan["nonce"], plan["total"], plan["duplicate_share"], plan["per_payload"]
        )
        return iter(planned)
    raise ValueError(f"unknown plan {plan['kind']!r}")


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.status: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.journaled = 0
        self.duplicates = 0
        self.sends: dict[str, float] = {}
        self.attempted: list[str] = []  # fingerprints of every payload sent
        self.acked: list[str] = []  # fingerprints of payloads finally answered 202
        self.refused: Counter[str] = Counter()  # replies retried, by status

    def result(self, seconds: float) -> dict[str, Any]:
        ok = self.status.get("202", 0)
        lat = self.latencies
        return {
            "requests": sum(self.status.values()),
            "seconds": seconds,
            "rps": ok / seconds if seconds else 0.0,
            "status": dict(self.status),
            "errors": dict(self.errors),
            "non202": sum(self.status.values()) - ok,
            "journaled": self.journaled,
            "duplicates": self.duplicates,
            "p50_ms": percentile(lat, 50),
            "p90_ms": percentile(lat, 90),
            "p99_ms": percentile(lat, 99),
            "max_ms": max(lat) if lat else 0.0,
            "sends": self.sends,
            "attempted": self.attempted,
            "acked": self.acked,
            "refused": dict(self.refused),
            "retries": sum(self.refused.values()),
        }


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    stats: Stats,
    fps: list[str],
    *,
    record_send: bool = False,
    retries: int = 0,
    record_acked: bool = False,
) -> None:
    """POST one payload. With ``retries``, a 5xx or a broken connection is retried
    with exponential backoff, as Alertmanager does, and counted in ``refused``."""
    if record_acked:
        stats.attempted.extend(fps)
    if record_send:
        sent = time.time()  # wall clock: compared with Postgres' clock_timestamp()
        for fp in fps:
            stats.sends[fp] = sent
    for attempt in range(retries + 1):
        started = time.perf_counter()
        try:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            if attempt < retries:
                stats.refused[type(exc).__name__] += 1
                await asyncio.sleep(min(5.0, 0.05 * 2**attempt))
                continue
            stats.errors[type(exc).__name__] += 1
            return
        if status >= 500 and attempt < retries:
            stats.refused[str(status)] += 1
            await asyncio.sleep(min(5.0, 0.05 * 2**attempt))
            continue
        break
    stats.latencies.append((time.perf_counter() - started) * 1000)
    stats.status[str(status)] += 1
    if status == 202:
        reply = orjson.loads(raw)
        stats.journaled += int(reply.get("journaled", 0))
        stats.duplicates += int(reply.get("duplicates", 0))
        if record_acked:
            stats.acked.extend(fps)


async def closed_loop(spec: dict[str, Any], stats: Stats) -> float:
    """``connections`` senders, each waits for its reply before the next request."""
    tmpl = payloads.template(spec["plan"]["alertname"])
    source = batches(spec["plan"])
    duration = spec.get("duration")
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    timeout = aiohttp.ClientTimeout(total=60)
    started = time.monotonic()
    deadline = started + duration if duration else None

    async def sender(session: aiohttp.ClientSession) -> None:
        for fps in source:
            if deadline is not None and time.monotonic() >= deadline:
                return
            await _post(
                session,
                spec["url"],
                tmpl.body(fps),
                stats,
                fps,
                retries=spec.get("retries", 0),
                record_acked=spec.get("record_acked", False),
            )

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(sender(session) for _ in range(spec["connections"])))
    return time.monotonic() - started


async def open_loop(spec: dict[str, Any], stats: Stats) -> float:
    """Request i leaves at t0 + i/rate, whether or not earlier ones were answered.

    t0 is now, or the wall-clock time ``start_at`` if the spec gives one (two
    generators started together keep a fixed offset, whatever their start-up took).
    """
    tmpl = payloads.template(spec["plan"]["alertname"])
    source = batches(spec["plan"])
    rate = float(spec["rate"])
    total = int(rate * spec["duration"])
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    timeout = aiohttp.ClientTimeout(total=60)
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if spec.get("start_at"):
            await asyncio.sleep(max(0.0, float(spec["start_at"]) - time.time()))
        started = time.monotonic()
        for i in range(total):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            fps = next(source)
            tasks.append(
                asyncio.create_task(
                    _post(session, spec["url"], tmpl.body(fps), stats, fps, record_send=True)
                )
            )
        await asyncio.gather(*tasks)
        return time.monotonic() - started


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    stats = Stats()
    if spec["mode"] == "closed":
        seconds = await closed_loop(spec, stats)
    elif spec["mode"] == "rate":
        seconds = await open_loop(spec, stats)
    else:
        raise ValueError(f"unknown mode {spec['mode']!r}")
    result = stats.result(seconds)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    args = parser.parse_args(argv)
    with open(args.spec, "rb") as f:
        spec = orjson.loads(f.read())
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    with open(spec["out"], "wb") as f:
        f.write(orjson.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
