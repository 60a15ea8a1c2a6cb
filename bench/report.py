"""Targets, the printed table, the JSON file and bench/RESULTS.md.

The targets are the issue's (2-core machine, ratios from the same run). A MISS is a
finding, not an error: the bench exits 0 whatever the figures, and non-zero only
when it could not measure.
"""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import subprocess
from collections.abc import Callable
from typing import Any

from bench import common
from bench.ttm import COLD_SECONDS


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _target(
    scenario: str, name: str, value: float | None, limit: float, better: str, unit: str = ""
) -> dict[str, Any]:
    ok = value is not None and not math.isnan(value)
    if ok:
        assert value is not None
        ok = value >= limit if better == "higher" else value <= limit
    op = ">=" if better == "higher" else "<="
    return {
        "scenario": scenario,
        "target": name,
        "value": value,
        "limit": f"{op} {limit:g}{unit}",
        "result": "PASS" if ok else "MISS",
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    intake = results.get("intake")
    if intake:
        for size, by_backend in intake["ratios"].items():
            for backend, ratio in by_backend.items():
                out.append(
                    _target(
                        "1 intake", f"{backend} {size}-alert rps / ceiling", ratio, 0.6, "higher"
                    )
                )
        for row in intake["rows"]:
            if row["target"] != "ceiling" and row["mode"] == "distinct":
                out.append(
                    _target(
                        "1 intake",
                        f"{row['target']} {row['payload_alerts']}-alert p99 ack",
                        row["p99_ms"],
                        25,
                        "lower",
                        " ms",
                    )
                )
    ttm = results.get("ttm")
    if ttm:
        for row in ttm["rows"]:
            hist = row["histogram"]
            b = row["backend"]
            out.append(_target("2 ttm", f"{b} p50 (histogram)", hist["p50_ms"], 20, "lower", " ms"))
            out.append(
                _target("2 ttm", f"{b} p99 (histogram)", hist["p99_ms"], 100, "lower", " ms")
            )
            out.append(
                _target("2 ttm", f"{b} doubled (mitigated twice)", row["doubled"], 0, "lower")
            )
    storm = results.get("storm")
    if storm:
        for row in storm["rows"]:
            b = row["backend"]
            out.append(_target("3 storm", f"{b} peak RSS", row["peak_rss_mb"], 200, "lower", " MB"))
            out.append(_target("3 storm", f"{b} lost", row["lost"], 0, "lower"))
            out.append(_target("3 storm", f"{b} doubled", row["doubled"], 0, "lower"))
            out.append(
                _target(
                    "3 storm",
                    f"{b} journal rows - distinct sent",
                    abs(row["journal_rows"] - row["distinct"]),
                    0,
                    "lower",
                )
            )
    rules = results.get("rules")
    if rules:
        rows = rules["rows"]
        out.append(
            _target(
                "4 rules",
                f"cost at {rows[-1]['rules']:,} / cost at {rows[0]['rules']:,} rules",
                rows[-1]["ratio_to_smallest"],
                2,
                "lower",
                "x",
            )
        )
    p0 = results.get("p0")
    if p0:
        for row in p0["rows"]:
            b = row["backend"]
            out.append(
                _target(
                    "6 p0",
                    f"{b} p99 time to first P0 page (e2e)",
                    row["end_to_end"]["p99_ms"],
                    1000,
                    "lower",
                    " ms",
                )
            )
            out.append(_target("6 p0", f"{b} P0 alerts unpaged", row["p0"]["unpaged"], 0, "lower"))
    backtest = results.get("backtest")
    if backtest and "rows" in backtest:
        for row in backtest["rows"]:
            where = f"{row['days']:g} d x {row['series_planned']:,} series"
            out.append(
                _target("7 backtest", f"{where}: seconds", row["seconds"], 30, "lower", " s")
            )
            out.append(
                _target(
                    "7 backtest",
                    "occurrences found - planned",
                    abs(row["occurrences"] - row["occurrences_planned"]),
                    0,
                    "lower",
                )
            )
    return out


# ----------------------------------------------------------------- the machine


def _first_line(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        mem_kb = 0
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0],
        "git_commit": _first_line(["git", "-C", str(common.REPO), "rev-parse", "--short", "HEAD"]),
        # Figures of a tree with uncommitted changes belong to no commit: say so.
        "uncommitted_changes": _first_line(
            ["git", "-C", str(common.REPO), "status", "--porcelain", "--", "remediator"]
        )
        not in ("", "?"),
    }
    try:
        import uvloop

        info["uvloop"] = getattr(uvloop, "__version__", "?")
    except ImportError:
        info["uvloop"] = None
    return info


# ---------------------------------------------------------------------- tables

Table = tuple[list[str], list[list[str]]]


def _tables(results: dict[str, Any]) -> list[tuple[str, Table]]:
    tables: list[tuple[str, Table]] = []
    intake = results.get("intake")
    if intake:
        head = [
            "target",
            "alerts/req",
            "load",
            "req/s",
            "alerts/s",
            "p50 ms",
            "p99 ms",
            "ratio",
            "CPU us/req",
            "non-202",
            "commits/s",
            "rows/commit",
            "backlog",
        ]
        body = []
        ratios = intake["ratios"]
        by_round = intake.get("ratios_by_round", {})
        for r in intake["rows"]:
            ratio = (
                ratios.get(str(r["payload_alerts"]), {}).get(r["target"])
                if r["mode"] == "distinct"
                else None
            )
            spread = by_round.get(str(r["payload_alerts"]), {}).get(r["target"], [])
            ratio_text = "1.00" if r["target"] == "ceiling" else _fmt(ratio, 3)
            if ratio is not None and len(spread) > 1:
                ratio_text += f" ({min(spread):.2f}-{max(spread):.2f})"
            body.append(
                [
                    r["target"],
                    str(r["payload_alerts"]),
                    r["mode"],
                    _fmt(r["rps"], 0),
                    _fmt(r["alerts_per_s"], 0),
                    _fmt(r["p50_ms"], 2),
                    _fmt(r["p99_ms"], 2),
                    ratio_text,
                    _fmt(r["server_cpu_us_per_request"], 0),
                    _fmt(r["non202"]),
                    _fmt(r.get("journal_commits_per_s"), 0),
                    _fmt(r.get("journal_rows_per_commit"), 1),
                    _fmt(r.get("worker_backlog"), 0),
                ]
            )
        rounds = intake.get("rounds", 1)
        tables.append(
            (
                f"1. Intake ceiling ratio ({intake['connections']} connections, "
                f"{intake['rows'][0]['generator']}"
                + (
                    f"; medians of {rounds} rounds, ratio range in brackets)" if rounds > 1 else ")"
                ),
                (head, body),
            )
        )
    ttm = results.get("ttm")
    if ttm:
        head = [
            "backend",
            "rate/s",
            "sent",
            "mitigated",
            "missed",
            "doubled",
            "hist p50",
            "hist p99",
            "runs p50",
            "runs p99",
            f"p99 first {COLD_SECONDS:g} s",
            "p99 after",
            "e2e p50",
            "e2e p99",
            "ack p99",
            "drain s",
        ]
        body = []
        for r in ttm["rows"]:
            body.append(
                [
                    r["backend"],
                    _fmt(r["achieved_rate"], 0),
                    _fmt(r["sent"]),
                    _fmt(r["mitigated"]),
                    _fmt(r["missed"]),
                    _fmt(r["doubled"]),
                    _fmt(r["histogram"]["p50_ms"]),
                    _fmt(r["histogram"]["p99_ms"]),
                    _fmt(r["runs"]["p50_ms"]),
                    _fmt(r["runs"]["p99_ms"]),
                    _fmt(r["runs_cold"]["p99_ms"]),
                    _fmt(r["runs_steady"]["p99_ms"]),
                    _fmt(r["end_to_end"]["p50_ms"]),
                    _fmt(r["end_to_end"]["p99_ms"]),
                    _fmt(r["ack_p99_ms"]),
                    _fmt(r["drain_s"]),
                ]
            )
        tables.append(
            (
                "2. Time to mitigation, ms (hist = metric, runs = exact, split at "
                f"{COLD_SECONDS:g} s into the storm; e2e = send -> target commit)",
                (head, body),
            )
        )
    storm = results.get("storm")
    if storm:
        head = [
            "backend",
            "sent/planned",
            "distinct",
            "alerts/s",
            "ack p99 ms",
            "journal rows",
            "lost",
            "lost after 202",
            "doubled",
            "503 retried",
            "drain s",
            "RSS start MB",
            "peak RSS MB",
        ]
        body = []
        for r in storm["rows"]:
            body.append(
                [
                    r["backend"],
                    f"{_fmt(r['occurrences'])}/{_fmt(r['planned'])}",
                    _fmt(r["distinct"]),
                    _fmt(r["alerts_per_s"], 0),
                    _fmt(r["ack_p99_ms"]),
                    _fmt(r["journal_rows"]),
                    _fmt(r["lost"]),
                    _fmt(r["lost_after_202"]),
                    _fmt(r["doubled"]),
                    _fmt(sum(r["refused"].values())),
                    _fmt(r["drain_s"]),
                    _fmt(r["rss_start_mb"]),
                    _fmt(r["peak_rss_mb"]),
                ]
            )
        tables.append(("3. Storm memory and loss (half duplicates, 20 alerts/req)", (head, body)))
    rules = results.get("rules")
    if rules:
        head = ["rules", "select us/alert", "ratio", "linear scan us/alert", "load s"]
        body = [
            [
                _fmt(r["rules"]),
                _fmt(r["select_us_per_alert"], 2),
                _fmt(r["ratio_to_smallest"], 2),
                _fmt(r["scan_us_per_alert"], 1),
                _fmt(r["load_s"], 2),
            ]
            for r in rules["rows"]
        ]
        tables.append(("4. Rule scaling (RuleSet.select per alert)", (head, body)))
    corr = results.get("corroboration")
    if corr and "rows" in corr:
        head = ["corroboration", "rate/s", "mitigated", "missed", "doubled"]
        head += ["runs p50", "runs p99", "e2e p50", "e2e p99", "ack p99", "drain s"]
        body = [
            [
                r["corroboration"],
                _fmt(r["achieved_rate"], 0),
                _fmt(r["mitigated"]),
                _fmt(r["missed"]),
                _fmt(r["doubled"]),
                _fmt(r["runs"]["p50_ms"]),
                _fmt(r["runs"]["p99_ms"]),
                _fmt(r["end_to_end"]["p50_ms"]),
                _fmt(r["end_to_end"]["p99_ms"]),
                _fmt(r["ack_p99_ms"]),
                _fmt(r["drain_s"]),
            ]
            for r in corr["rows"]
        ]
        for view, label in (("runs", "added (runs)"), ("end_to_end", "added (e2e)")):
            d = corr[view]
            p50 = f"{_fmt(d['added_p50_ms'])} (x{_fmt(d['ratio_p50'], 2)})"
            p99 = f"{_fmt(d['added_p99_ms'])} (x{_fmt(d['ratio_p99'], 2)})"
            cells = [p50, p99, "", ""] if view == "runs" else ["", "", p50, p99]
            body.append([label, "", "", "", "", *cells, "", ""])
        tables.append(
            (
                "5. Cost of corroboration, ms: scenario 2 on Postgres without and with"
                f" targets.prometheus ({corr['prometheus']}, loopback,"
                f" {_fmt(corr['firing_series'])} firing ALERTS series)",
                (head, body),
            )
        )
    p0 = results.get("p0")
    if p0 and p0["rows"]:
        head = ["backend", "P2 rate/s", "P2 sent", "P2 202", "P2 done", "P2 backlog"]
        head += ["P2 ack p99", "parked", "P0 sent", "paged", "unpaged", "e2e p50", "e2e p99"]
        head += ["e2e max", "daemon p50", "daemon p99", "delivered p99", "P0 ack p99"]
        body = []
        for r in p0["rows"]:
            p2, alerts = r["p2"], r["p0"]
            body.append(
                [
                    r["backend"],
                    _fmt(p2["achieved_rate"], 0),
                    _fmt(p2["sent"]),
                    _fmt(p2["accepted"]),
                    _fmt(p2["processed"]),
                    _fmt(p2["backlog"]),
                    _fmt(p2["ack_p99_ms"]),
                    f"{r['parked_before']}/{r['parked_after']}",
                    _fmt(alerts["sent"]),
                    _fmt(alerts["paged"]),
                    _fmt(alerts["unpaged"]),
                    _fmt(r["end_to_end"]["p50_ms"]),
                    _fmt(r["end_to_end"]["p99_ms"]),
                    _fmt(r["end_to_end"]["max_ms"]),
                    _fmt(r["daemon"]["p50_ms"]),
                    _fmt(r["daemon"]["p99_ms"]),
                    _fmt(r["delivered"]["p99_ms"]),
                    _fmt(alerts["ack_p99_ms"]),
                ]
            )
        first = p0["rows"][0]
        tables.append(
            (
                f"6. Time to first P0 page, ms, under {_fmt(first['p2']['rate'], 0)} P2"
                f" alerts/s with {first['parked_planned']} runs parked"
                f" (workers: {first['workers']}; e2e = send -> page queued, daemon ="
                " received -> queued, delivered = send -> pager answered; P2 done and"
                " backlog at the end of the load; parked = before/after)",
                (head, body),
            )
        )
    bt = results.get("backtest")
    if bt and bt.get("rows"):
        head = ["days", "series", "occurrences", "unmatched", "runs", "blocked", "seconds"]
        head += ["occ/s", "peak RSS MB", "read s", "simulate s", "sim occ/s", "backfill s"]
        body = [
            [
                _fmt(r["days"]),
                _fmt(r["series"]),
                _fmt(r["occurrences"]),
                _fmt(r["unmatched"]),
                _fmt(r["runs"]),
                _fmt(r["blocked"]),
                _fmt(r["seconds"], 2),
                _fmt(r["occurrences_per_s"], 0),
                _fmt(r["peak_rss_mb"]),
                _fmt(r["read_s"], 2),
                _fmt(r["simulate_s"], 2),
                _fmt(r["simulate_occurrences_per_s"], 0),
                _fmt(r["backfill_s"]),
            ]
            for r in bt["rows"]
        ]
        tables.append(
            (
                "7. Backtest: `remediator backtest --json` against a real Prometheus holding"
                " the history (backfilled with promtool; not timed), start to exit; read and"
                " simulate timed apart in-process",
                (head, body),
            )
        )
    tgt = results.get("targets", [])
    if tgt:
        head = ["scenario", "target", "value", "limit", "result"]
        body = [
            [t["scenario"], t["target"], _fmt(t["value"], 2), t["limit"], t["result"]] for t in tgt
        ]
        tables.append(("Targets", (head, body)))
    return tables


def _text_table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    rows = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in body
    ]
    return "\n".join([line, "  ".join("-" * w for w in widths), *rows])


def _md_table(head: list[str], body: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(out)


def text(results: dict[str, Any]) -> str:
    return _render(results, lambda title: f"\n{title}", _text_table)


def _pg_settings(results: dict[str, Any]) -> str:
    settings = results.get("postgres_settings")
    if not settings:
        return ""
    return " (" + ", ".join(f"{k} {v}" for k, v in settings.items()) + ")"


def markdown(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    header = [
        "# Benchmark results",
        "",
        f"Measured {results['date']} with `{command}` ({results['plan']} run, "
        f"{results['elapsed_s']:.0f} s) at commit {m['git_commit']}"
        + (" plus uncommitted changes to remediator/." if m["uncommitted_changes"] else "."),
        "",
        f"Machine: {m['cpus']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}, uvloop {m['uvloop']}, "
        f"SQLite {m['sqlite']}, PostgreSQL {results.get('postgres_version', '?')}"
        f"{_pg_settings(results)}, {m['wrk']}.",
        "",
        f"Load average (1 min) at start {results['load_average']['start']:.2f}, "
        f"at end {results['load_average']['end']:.2f}. The load generators and the "
        "servers share these cores; other work on the machine skews the figures.",
        "",
        "Regenerate with the command above; bench/README.md says what each column means.",
    ]
    body = _render(results, lambda title: f"\n## {title}\n", _md_table)
    notes = results.get("notes", [])
    tail = ["", "## Notes", "", *[f"- {n}" for n in notes]] if notes else []
    return "\n".join(header) + "\n" + body + "\n" + "\n".join(tail) + "\n"


README_START = "<!-- bench-summary:start (bench/run.py rewrites this part) -->"
README_END = "<!-- bench-summary:end -->"


def readme_summary(results: dict[str, Any]) -> str:
    """The README's short form: when, on what, and every target with its result."""
    m = results["machine"]
    rows = [
        [t["scenario"], t["target"], _fmt(t["value"], 2), t["limit"], t["result"]]
        for t in results["targets"]
    ]
    passed = sum(t["result"] == "PASS" for t in results["targets"])
    return "\n".join(
        [
            README_START,
            f"Latest full run: {results['date']}, {m['cpus']} cores ({m['cpu_model']}), "
            f"{m['memory_gib']} GiB, commit {m['git_commit']}; {passed} of "
            f"{len(rows)} targets met. Ratios are against the bare aiohttp ceiling "
            "measured in the same run; all figures in bench/RESULTS.md.",
            "",
            _md_table(["scenario", "target", "value", "limit", "result"], rows),
            README_END,
        ]
    )


def update_readme(readme: str, results: dict[str, Any]) -> str:
    """Replace the marked summary in the README's text (unchanged if unmarked)."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        return readme
    return readme[:start] + readme_summary(results) + readme[end + len(README_END) :]


def _render(
    results: dict[str, Any],
    title: Callable[[str], str],
    table: Callable[[list[str], list[list[str]]], str],
) -> str:
    parts = []
    for name, (head, body) in _tables(results):
        parts.append(title(name))
        parts.append(table(head, body))
    return "\n".join(parts)
