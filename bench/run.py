"""Run the benchmark suite: one command, a printed table, a JSON file.

    .venv/bin/python bench/run.py            # full run (< 10 min): results/latest.json + RESULTS.md
    .venv/bin/python bench/run.py --quick    # shorter (< 2 min): results/quick.json
    .venv/bin/python bench/run.py --profile  # py-spy profiles of the daemon under scenario 1

Everything it needs it starts itself on free 127.0.0.1 ports (the ceiling server,
the daemons, the load generators) and stops again; Postgres comes from
$REMEDIATOR_BENCH_PG (default: the test database, 127.0.0.1:5432/test), in fresh
schemas that are dropped afterwards. It exits non-zero only if it could not
measure; a MISSed target is a finding, printed as such.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

# Run as a script (bench/run.py): make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench import (
    backtest,
    common,
    corroboration,
    intake,
    p0,
    plan,
    report,
    rules_scaling,
    storm,
    ttm,
    wrk,
)

RESULTS = common.REPO / "bench" / "results"
SCENARIOS = ("intake", "ttm", "storm", "rules", "p0", "backtest")
# Not in the default run (about twice scenario 2's time): --only corroboration.
OPTIONAL = ("corroboration",)


# Settings that decide what a durable Postgres commit costs, reported beside the
# figures: a server with fsync off would make every Postgres row look faster than it is.
PG_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "autovacuum",
    "shared_buffers",
    "max_wal_size",
)


def _pg_server() -> tuple[str, dict[str, str]]:
    """The Postgres server's version and PG_SETTINGS, as it reports them."""
    rows = asyncio.run(
        common.pg_fetch(
            "SELECT name, current_setting(name) AS v FROM unnest($1::text[]) AS name"
            " UNION ALL SELECT 'server_version', current_setting('server_version')",
            list(PG_SETTINGS),
        )
    )
    got = {str(r["name"]): str(r["v"]) for r in rows}
    return got.pop("server_version"), got


def _warn(notes: list[str], note: str) -> None:
    """A caveat on the figures: kept in the results and said at once."""
    notes.append(note)
    print(f"warning: {note}", file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter runs (< 2 minutes)")
    mode.add_argument("--smoke", action="store_true", help="seconds; for the CI smoke test")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile the daemon under scenario 1 with py-spy instead (--quick: shorter)",
    )
    p.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)};"
        f" also: {','.join(OPTIONAL)})",
    )
    p.add_argument("--out", type=Path, help="JSON results file (default by mode)")
    p.add_argument("--markdown", type=Path, help="also write a Markdown report here")
    p.add_argument(
        "--python-load",
        action="store_true",
        help="use bench.loadgen for scenario 1 even when wrk is installed",
    )
    p.add_argument(
        "--rounds",
        type=int,
        help="scenario 1 rounds (ceiling, then each backend); medians are reported "
        "(default: 3 for a full run, 1 otherwise)",
    )
    p.add_argument(
        "--ttm-rate",
        type=float,
        help="alerts/s of scenarios 2 and 5 (default by mode: 200; 20 for --smoke)",
    )
    p.add_argument("--ttm-seconds", type=float, help="seconds of load of scenarios 2 and 5")
    p.add_argument(
        "--p0-rate",
        type=float,
        help="P2 alerts/s of scenario 6 (default by mode: 1000; 20 for --smoke)",
    )
    p.add_argument("--p0-seconds", type=float, help="seconds of P2 load of scenario 6")
    p.add_argument(
        "--p0-per-payload", type=int, help="P2 alerts per request of scenario 6 (default 10)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, DBs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = plan.SMOKE if args.smoke else plan.QUICK if args.quick else plan.FULL
    if args.rounds is not None:
        if args.rounds < 1:
            print("--rounds must be at least 1", file=sys.stderr)
            return 2
        chosen = replace(chosen, intake_rounds=args.rounds)
    if args.ttm_rate is not None:
        chosen = replace(chosen, ttm_rate=args.ttm_rate)
    if args.ttm_seconds is not None:
        chosen = replace(chosen, ttm_seconds=args.ttm_seconds)
    if chosen.ttm_rate <= 0 or chosen.ttm_seconds <= 0:
        print("--ttm-rate and --ttm-seconds must be positive", file=sys.stderr)
        return 2
    if args.p0_rate is not None:
        chosen = replace(chosen, p0_load_rate=args.p0_rate)
    if args.p0_seconds is not None:
        # The P0 alerts keep their spacing and fit in the load, before its last second.
        fit = int((args.p0_seconds - chosen.p0_lead - 1) / chosen.p0_interval)
        chosen = replace(chosen, p0_load_seconds=args.p0_seconds, p0_alerts=max(1, fit))
    if args.p0_per_payload is not None:
        if args.p0_per_payload < 1:
            print("--p0-per-payload must be at least 1", file=sys.stderr)
            return 2
        chosen = replace(chosen, p0_load_per_payload=args.p0_per_payload)
    if chosen.p0_load_rate <= 0 or chosen.p0_load_seconds <= chosen.p0_lead + 1:
        print(
            f"--p0-rate must be positive and --p0-seconds above {chosen.p0_lead + 1:g}",
            file=sys.stderr,
        )
        return 2
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SCENARIOS) - set(OPTIONAL))
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    notes: list[str] = []
    pg_problem = common.pg_reachable()
    backends: tuple[str, ...] = ("sqlite",) if pg_problem else ("sqlite", "postgres")
    if pg_problem:
        _warn(notes, f"PostgreSQL not reachable ({pg_problem}): Postgres rows, TTM and P0 not run")
    use_wrk = wrk.available() is not None and not args.python_load
    if not use_wrk and "intake" in only:
        why = "--python-load" if args.python_load else "wrk not installed (apt-get install wrk)"
        _warn(notes, f"scenario 1 load from bench.loadgen ({why}): the ceiling may be client-bound")

    if args.profile:
        from bench import profile

        return profile.main(chosen, backends=backends, use_wrk=use_wrk, keep=args.keep)

    load_start = os.getloadavg()[0]
    if load_start > 1.0:
        _warn(
            notes,
            f"the machine was busy at start (load average {load_start:.2f} on "
            f"{os.cpu_count()} cores): figures are pessimistic",
        )

    def usable(wanted: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(b for b in wanted if b in backends)

    workdir = Path(tempfile.mkdtemp(prefix="remediator-bench-"))
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "plan": chosen.name,
        "machine": report.machine(),
        "notes": notes,
        "elapsed_by_scenario_s": {},
    }
    if not pg_problem:
        results["postgres_version"], results["postgres_settings"] = _pg_server()
        if results["postgres_settings"]["fsync"] != "on":
            _warn(notes, "PostgreSQL runs with fsync off: its commits cost less than durable ones")
    try:
        for name in only:
            t0 = time.monotonic()
            print(f"[{time.monotonic() - started:6.1f}s] scenario {name} ...", flush=True)
            if name == "intake":
                results["intake"] = intake.run(
                    workdir, chosen, backends=usable(chosen.intake_backends), use_wrk=use_wrk
                )
            elif name == "ttm" and not pg_problem:
                # Skipped without Postgres: its target is Postgres whatever the state.
                results["ttm"] = ttm.run(workdir, chosen, backends=chosen.ttm_backends)
            elif name == "storm":
                results["storm"] = storm.run(
                    workdir, replace(chosen, storm_backends=usable(chosen.storm_backends))
                )
            elif name == "rules":
                results["rules"] = rules_scaling.run(workdir, chosen)
            elif name == "p0" and not pg_problem:
                # Skipped without Postgres: its target is Postgres whatever the state.
                results["p0"] = p0.run(workdir, chosen, backends=chosen.p0_backends)
                for row in results["p0"]["rows"]:
                    achieved = row["p2"]["achieved_rate"]
                    if achieved < 0.9 * chosen.p0_load_rate:
                        _warn(
                            notes,
                            f"scenario 6 ({row['backend']}): the P2 load reached"
                            f" {achieved:,.0f} alerts/s of the {chosen.p0_load_rate:,.0f}"
                            " planned",
                        )
            elif name == "corroboration" and not pg_problem:
                results["corroboration"] = corroboration.run(workdir, chosen)
                if "skipped" in results["corroboration"]:
                    _warn(notes, f"corroboration not run: {results['corroboration']['skipped']}")
            elif name == "backtest":
                results["backtest"] = backtest.run(workdir, chosen)
                if "skipped" in results["backtest"]:
                    _warn(notes, f"backtest not run: {results['backtest']['skipped']}")
            results["elapsed_by_scenario_s"][name] = round(time.monotonic() - t0, 1)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["load_average"] = {"start": load_start, "end": os.getloadavg()[0]}
    results["targets"] = report.targets(results)

    print(report.text(results))
    print(f"\n{chosen.name} run took {results['elapsed_s']:.0f} s")
    out = args.out or RESULTS / {"full": "latest.json"}.get(chosen.name, f"{chosen.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"results: {out}")
    md = args.markdown
    if md is None and chosen is plan.FULL and args.out is None and only == list(SCENARIOS):
        md = common.REPO / "bench" / "RESULTS.md"
    if md is not None:
        command = ".venv/bin/python bench/run.py" + {"full": "", "quick": " --quick"}.get(
            chosen.name, f" --{chosen.name}"
        )
        md.write_text(report.markdown(results, command))
        print(f"markdown: {md}")
        if md == common.REPO / "bench" / "RESULTS.md":
            readme = common.REPO / "README.md"
            readme.write_text(report.update_readme(readme.read_text(), results))
            print(f"summary: {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
