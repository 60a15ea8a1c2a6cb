"""Profile ``remediator serve`` under the scenario-1 load with py-spy, and say where
the time goes: per category (JSON parse and validation, per-alert log lines,
metrics, journal, workers, HTTP, event loop) and per source line of remediator/,
as a share of the event-loop thread's samples and as CPU microseconds per request.

    .venv/bin/python bench/run.py --profile [--quick]

Writes the raw collapsed stacks (open them in speedscope or flamegraph.pl) to
bench/results/profile-<backend>-<n>.txt and the summary to
bench/results/profile.md. py-spy (``pip install py-spy==0.4.3``) attaches to the
daemon's pid and never pauses it (``--nonblocking``).
"""

from __future__ import annotations

import linecache
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common, drive, intake, servers, wrk
from bench.plan import Plan

RATE = 250  # samples per second
RESULTS = common.REPO / "bench" / "results"
_PROJECT = {p.name for p in (common.REPO / "remediator").rglob("*.py")}


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int

    @classmethod
    def parse(cls, text: str) -> Frame:
        # "WebhookHandler._handle (webhook.py:104)"
        name, _, where = text.rpartition(" (")
        file, _, line = where.rstrip(")").rpartition(":")
        return cls(name, file, int(line) if line.isdigit() else 0)

    @property
    def project(self) -> bool:
        return self.file.startswith("remediator/") or (
            "/" not in self.file and self.file in _PROJECT
        )

    def lib(self, name: str) -> bool:
        return self.file.startswith(name + "/")


Stack = tuple[Frame, ...]


def _any(stack: Stack, pred: Callable[[Frame], bool]) -> bool:
    return any(pred(f) for f in stack)


# First match wins; each predicate looks at the whole stack of one sample.
CATEGORIES: list[tuple[str, Callable[[Stack], bool]]] = [
    ("structlog: log lines", lambda s: _any(s, lambda f: f.lib("structlog") or f.lib("logging"))),
    ("prometheus_client: metrics", lambda s: _any(s, lambda f: f.lib("prometheus_client"))),
    (
        "pydantic: JSON parse + validation",
        lambda s: _any(
            s, lambda f: f.lib("pydantic") or f.function.endswith("model_validate_json")
        ),
    ),
    ("models.occurrences()", lambda s: _any(s, lambda f: f.function == "occurrences")),
    (
        "journal: group commit (incl. driver)",
        lambda s: _any(
            s, lambda f: f.file.endswith("journal.py") or "append_occurrences" in f.function
        ),
    ),
    (
        "engine: guards (kill switch, circuit, rate, cooldown, lock)",
        lambda s: _any(s, lambda f: f.function in ("Engine._guard", "Engine.is_paused")),
    ),
    (
        "engine: page text + outbox (enqueue, delivery)",
        lambda s: _any(
            s,
            lambda f: (
                (f.function == "build" and f.file.endswith("pages.py"))
                or f.function.startswith("Outbox.")
            ),
        ),
    ),
    (
        "engine: step run + step records (incl. the target UPDATE)",
        lambda s: _any(s, lambda f: f.function.startswith("StepRunner.")),
    ),
    (
        "engine: run records (create, update, finish, circuit, lock)",
        lambda s: _any(s, lambda f: f.function.startswith("Engine.")),
    ),
    (
        "workers: claim/finish occurrences (incl. driver)",
        lambda s: _any(
            s,
            lambda f: (
                f.function
                in (
                    "Daemon._worker",
                    "Daemon._process",
                    "StateStore.claim_occurrences",
                    "StateStore.finish_occurrence",
                    "Engine.process",
                )
            ),
        ),
    ),
    (
        "maintenance, gauges, outbox loops",
        lambda s: _any(
            s,
            lambda f: (
                f.function
                in (
                    "Daemon._maintenance",
                    "Daemon.maintenance_once",
                    "Daemon.refresh_gauges",
                    "Outbox.run_forever",
                    "Engine.maintain",
                )
            ),
        ),
    ),
    (
        "DB driver, caller unknown (asyncpg, sqlite3)",
        lambda s: _any(s, lambda f: f.lib("asyncpg") or f.lib("sqlite3")),
    ),
    ("webhook handler, other lines", lambda s: _any(s, lambda f: f.file.endswith("webhook.py"))),
    ("aiohttp: HTTP server", lambda s: _any(s, lambda f: f.lib("aiohttp"))),
    (
        "event loop + C I/O (uvloop, HTTP parser)",
        lambda s: bool(s) and s[-1].function in ("Runner.run", "run", "Runner.run_until_complete"),
    ),
]


def categorise(stack: Stack) -> str:
    for name, pred in CATEGORIES:
        if pred(stack):
            return name
    return "other"


def parse_raw(path: Path) -> dict[str, list[tuple[Stack, int]]]:
    """Collapsed stacks by thread: {'MainThread': [(frames, count), ...], ...}."""
    threads: dict[str, list[tuple[Stack, int]]] = {}
    for line in path.read_text().splitlines():
        text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = text.split(";")
        thread = parts[0].split(": ", 1)[-1]
        frames = tuple(Frame.parse(p) for p in parts[1:])
        threads.setdefault(thread, []).append((frames, int(count)))
    return threads


def summarise(path: Path, *, seconds: float, requests: int) -> dict[str, Any]:
    threads = parse_raw(path)
    main_name = next((t for t in threads if t.startswith("MainThread")), None)
    if main_name is None:
        raise RuntimeError(f"no MainThread samples in {path}")
    main = threads[main_name]
    total = sum(n for _, n in main)
    possible = seconds * RATE

    def per_req_us(samples: int) -> float:
        return samples / RATE / requests * 1e6 if requests else float("nan")

    cats: Counter[str] = Counter()
    lines: Counter[tuple[str, int, str]] = Counter()
    leaves: Counter[tuple[str, str]] = Counter()
    for stack, n in main:
        cats[categorise(stack)] += n
        # Each project line once per sample: inclusive cost of that line.
        for f in {(f.file, f.line, f.function) for f in stack if f.project and not _entry(f)}:
            lines[f] += n
        if stack:
            leaves[(stack[-1].function, stack[-1].file)] += n
    others = {
        name: sum(n for _, n in samples) for name, samples in threads.items() if name != main_name
    }
    return {
        "file": path.name,
        "seconds": seconds,
        "requests": requests,
        "main_samples": total,
        "main_busy_share": total / possible if possible else float("nan"),
        "main_cpu_us_per_request": per_req_us(total),
        "categories": [
            {"category": c, "share": n / total, "us_per_request": per_req_us(n)}
            for c, n in cats.most_common()
        ],
        "lines": [
            {
                "where": f"{file}:{line}",
                "function": fn,
                "source": _source(file, line),
                "share": n / total,
                "us_per_request": per_req_us(n),
            }
            for (file, line, fn), n in lines.most_common(25)
        ],
        "self": [
            {"function": fn, "file": file, "share": n / total}
            for (fn, file), n in leaves.most_common(15)
        ],
        "other_threads": {
            name: {"samples": n, "busy_share": n / possible if possible else float("nan")}
            for name, n in others.items()
        },
    }


def _entry(f: Frame) -> bool:
    """The process entry frames (cli main, __main__): in every sample, say nothing."""
    return f.file.endswith(("cli/__init__.py", "cli/serve.py", "__main__.py"))


def _source(file: str, line: int) -> str:
    candidates = list((common.REPO / "remediator").rglob(Path(file).name))
    if file.startswith("remediator/"):
        candidates = [common.REPO / file]
    for c in candidates:
        text = linecache.getline(str(c), line).strip()
        if text:
            return text[:90]
    return ""


def record(server: servers.Server, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(server.pid),
            "--rate",
            str(RATE),
            "--nonblocking",
            "--threads",
            "--format",
            "raw",
            "--duration",
            str(max(1, round(seconds))),
            "--output",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def profile_one(
    kind: str, per_payload: int, plan: Plan, workdir: Path, use_wrk: bool
) -> dict[str, Any]:
    wd = workdir / f"profile-{kind}-{per_payload}"
    wd.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{kind}-{per_payload}.txt"
    server = servers.start_serve(kind, wd)
    try:
        args: dict[str, Any] = {
            "server_pid": server.pid,
            "workdir": wd,
            "alertname": intake.ALERTNAME,
            "per_payload": per_payload,
            "connections": plan.connections,
            "use_wrk": use_wrk,
        }
        drive.closed_load(server.webhook, name="warmup", seconds=1.0, **args)
        spy = record(server, out, plan.intake_seconds)
        time.sleep(0.3)  # py-spy attached before the load starts
        load = drive.closed_load(
            server.webhook, name="measure", seconds=plan.intake_seconds, **args
        )
        spy_out, _ = spy.communicate(timeout=plan.intake_seconds + 30)
        if spy.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed: {spy_out.decode(errors='replace')[-1000:]}")
    finally:
        server.stop()
    ok = load["requests"] - load["non202"]
    summary = summarise(out, seconds=plan.intake_seconds, requests=ok)
    summary.update(backend=kind, payload_alerts=per_payload, rps=load["rps"])
    return summary


def profile_ttm(kind: str, plan: Plan, workdir: Path) -> dict[str, Any]:
    """The in-process daemon of scenario 2 (runs through BENCH-TTM) at the fixed rate."""
    from bench import payloads, runbook, ttm

    wd = workdir / f"profile-ttm-{kind}"
    wd.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-ttm-{kind}.txt"
    seconds = min(plan.ttm_seconds, 10.0)
    nonce = drive.new_nonce()
    total = int(plan.ttm_rate * seconds)
    schema = common.new_schema("bench_target")
    target_dsn = common.with_search_path(common.PG_DSN, schema)
    server: servers.Server | None = None
    try:
        fps = [payloads.fingerprint(nonce, 0, i) for i in range(total)]
        ttm.prepare_target(target_dsn, fps)
        server = servers.start_ttm_daemon(kind, wd, target_dsn)
        spy = record(server, out, seconds)
        time.sleep(0.3)
        spec = {
            "url": server.webhook,
            "mode": "rate",
            "rate": plan.ttm_rate,
            "duration": seconds,
            "connections": plan.connections,
            "plan": {
                "kind": "distinct",
                "alertname": runbook.ALERTNAME,
                "per_payload": 1,
                "nonce": nonce,
            },
        }
        drive.loadgen(spec, wd, "ttm")
        spy_out, _ = spy.communicate(timeout=seconds + 30)
        if spy.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed: {spy_out.decode(errors='replace')[-1000:]}")
        mitigated = ttm.mitigated_count(target_dsn)
    finally:
        if server is not None:
            server.stop()
        common.drop_schema(schema)
    # Per run mitigated inside the window: the daemon's throughput, not the offered rate.
    summary = summarise(out, seconds=seconds, requests=max(1, mitigated))
    summary.update(
        backend=f"ttm daemon, {kind} state",
        payload_alerts=1,
        rps=mitigated / seconds,
        unit="run mitigated",
    )
    return summary


def markdown(summaries: list[dict[str, Any]]) -> str:
    out = ["# Profile of remediator serve under scenario 1 (generated)", ""]
    out.append(
        f"py-spy {RATE} Hz, --nonblocking; shares are of the event-loop thread's samples; "
        "us/req = sampled time / requests answered 202 (for the TTM daemon: per run "
        "mitigated in the window). Categories: first match over the whole stack, in the "
        "order listed in bench/profile.py."
    )
    for s in summaries:
        unit = s.get("unit", "request")
        title = (
            f"{s['backend']}: {s['rps']:,.0f} runs mitigated/s"
            if unit != "request"
            else f"{s['backend']}, {s['payload_alerts']}-alert payloads: {s['rps']:,.0f} req/s"
        )
        out += [
            "",
            f"## {title}",
            "",
            f"Event-loop thread busy {s['main_busy_share']:.0%} of the wall time, "
            f"{s['main_cpu_us_per_request']:,.0f} us per {unit}. Other threads: "
            + ", ".join(
                f"{name} busy {v['busy_share']:.0%}" for name, v in s["other_threads"].items()
            )
            + f". Raw stacks: bench/results/{s['file']}.",
            "",
            "| category | share | us/req |",
            "|---|---:|---:|",
        ]
        out += [
            f"| {c['category']} | {c['share']:.1%} | {c['us_per_request']:,.0f} |"
            for c in s["categories"]
        ]
        out += [
            "",
            "| remediator line (inclusive) | share | us/req | source |",
            "|---|---:|---:|---|",
        ]
        out += [
            f"| {ln['where']} {ln['function']} | {ln['share']:.1%} | {ln['us_per_request']:,.0f} "
            f"| `{ln['source'].replace('|', '/')}` |"
            for ln in s["lines"][:15]
        ]
        out += ["", "| leaf (self time) | share |", "|---|---:|"]
        out += [f"| {x['function']} ({x['file']}) | {x['share']:.1%} |" for x in s["self"][:10]]
    return "\n".join(out) + "\n"


def main(plan: Plan, *, backends: tuple[str, ...], use_wrk: bool, keep: bool) -> int:
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy==0.4.3", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="remediator-profile-"))
    summaries = []
    try:
        for kind in backends:
            for size in plan.payload_sizes:
                print(f"profiling {kind}, {size}-alert payloads ...", flush=True)
                summaries.append(profile_one(kind, size, plan, workdir, use_wrk))
        if "postgres" in backends:  # scenario 2 needs its Postgres target
            for kind in backends:
                print(f"profiling the time-to-mitigation daemon, {kind} state ...", flush=True)
                summaries.append(profile_ttm(kind, plan, workdir))
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = markdown(summaries)
    (RESULTS / "profile.md").write_text(text)
    print(text)
    print(f"summary: {RESULTS / 'profile.md'}")
    _ = wrk  # wrk is driven through bench.drive
    return 0
