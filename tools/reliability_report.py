"""Run the reliability tests and print what they proved, as one table.

    .venv/bin/python tools/reliability_report.py            # everything, soak variants too
    .venv/bin/python tools/reliability_report.py --quick    # the short variants CI runs
    .venv/bin/python tools/reliability_report.py --from results.jsonl   # print only

It runs ``pytest tests/reliability`` with ``$REMEDIATOR_RELIABILITY_OUT`` pointing at
a results file (each test appends its figures there, see tests/reliability/_report.py)
and a JUnit XML file for the pass/fail of each test, then prints: load held, faults
injected and survived, hostile inputs tried, alerts lost (must be 0) and actions
doubled (must be 0). ``--markdown FILE`` also writes the report as Markdown.

Exit status: 0 only if every test passed and nothing was lost or doubled.
This tool only reads what the tests wrote; it never decides a figure itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability import _report  # noqa: E402

COLUMNS = {
    "load": ("alerts", "requests", "replicas", "duration_s"),
    "ha": ("alerts", "runs", "lost", "doubled", "duration_s"),
    "crash": ("kills", "alerts", "runs", "lost", "doubled", "outcome_unknown", "duration_s"),
    "shutdown": ("sigterms", "alerts", "runs", "lost", "doubled", "outcome_unknown"),
    "faults": ("injected", "survived"),
    "hostile": ("tried", "rejected", "server_errors"),
    "starvation": ("p0_first_page_s", "approval_run_s_max"),
}
TITLES = {
    "load": "Load held",
    "ha": "HA: replicas sharing one state store",
    "crash": "Crash recovery (kill -9)",
    "shutdown": "Graceful shutdown (SIGTERM)",
    "faults": "Faults injected and survived",
    "hostile": "Hostile inputs tried",
    "starvation": "P0 never waits (first page, approvals run)",
}


def run_pytest(quick: bool, results: Path, junit: Path, extra: list[str]) -> int:
    env = dict(os.environ)
    env[_report.ENV] = str(results)
    env["REMEDIATOR_SOAK"] = "0" if quick else "1"
    cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"]
    cmd += [f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    if quick:
        cmd += ["-m", "not soak"]
    else:
        cmd += ["-o", "timeout=3600"]  # soak variants run for many minutes
    cmd += extra
    print("$", " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd, cwd=ROOT, env=env)  # noqa: S603 - our interpreter, fixed argv


def outcomes(junit: Path) -> dict[str, tuple[str, float]]:
    """test node id -> (passed|failed|error|skipped, seconds)."""
    out: dict[str, tuple[str, float]] = {}
    if not junit.exists():
        return out
    # The file pytest just wrote into our own temp dir, not outside input.
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314
        file = case.get("file") or ""
        node = f"{file}::{case.get('name')}" if file else str(case.get("name"))
        state = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                state = {"failure": "failed"}.get(tag, tag)
        out[node] = (state, float(case.get("time") or 0))
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "/".join(str(v) for v in value)
    return str(value)


def _label(rec: dict[str, Any]) -> str:
    name = rec["figures"].get("name")
    return str(name) if name else rec["test"].split("::")[-1] or "(unnamed)"


def render(records: list[dict[str, Any]], results: dict[str, tuple[str, float]], md: bool) -> str:
    lines: list[str] = []
    for section in _report.SECTIONS:
        recs = [r for r in records if r["section"] == section]
        if not recs:
            continue
        cols = COLUMNS[section]
        head = ["scenario", *cols, "test", "other figures"]
        rows = []
        for r in recs:
            f = r["figures"]
            other = ", ".join(
                f"{k}={_cell(v)}" for k, v in sorted(f.items()) if k not in (*cols, "name")
            )
            result = results.get(r["test"], ("?", 0.0))[0] if results else "-"
            rows.append([_label(r), *(_cell(f.get(c, "")) for c in cols), result, other])
        lines += ["", f"## {TITLES[section]}" if md else TITLES[section], ""]
        lines += _table(head, rows, md)
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]], md: bool) -> list[str]:
    if md:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return out + ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    # The last column ("other figures") is free text: it is not padded.
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)][:-1]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    return ["  " + fmt.format(*head).rstrip(), *("  " + fmt.format(*r).rstrip() for r in rows)]


def totals(records: list[dict[str, Any]]) -> dict[str, int]:
    def total(key: str, sections: tuple[str, ...] = _report.SECTIONS) -> int:
        return sum(
            int(r["figures"].get(key) or 0)
            for r in records
            if r["section"] in sections and isinstance(r["figures"].get(key, 0), int | float)
        )

    return {
        "alerts under load": total("alerts", ("load",)),
        "kills (kill -9)": total("kills"),
        "SIGTERMs": total("sigterms"),
        "faults injected": total("injected", ("faults",)),
        "faults survived": total("survived", ("faults",)),
        "hostile inputs tried": total("tried", ("hostile",)),
        "alerts lost": total("lost"),
        "actions doubled": total("doubled"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short variants only (what CI runs)")
    p.add_argument("--from", dest="source", help="print the report of an existing results file")
    p.add_argument("--results", help="keep the results file here (default: a temp dir)")
    p.add_argument("--markdown", help="also write the report as Markdown to this file")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = p.parse_args(argv)

    started = dt.datetime.now(dt.UTC)
    code = 0
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        if args.source:
            results_path = Path(args.source)
        else:
            results_path = Path(args.results or Path(tmp) / "figures.jsonl")
            results_path.unlink(missing_ok=True)
            code = run_pytest(args.quick, results_path, junit, args.pytest_args)
        records = _report.read(results_path)
        results = outcomes(junit)

    counts: dict[str, int] = {}
    for state, _ in results.values():
        counts[state] = counts.get(state, 0) + 1
    t = totals(records)
    kind = (
        "from " + str(args.source) if args.source else ("quick run" if args.quick else "full run")
    )
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no test results"
    head = f"Reliability report, {started:%Y-%m-%d %H:%M} UTC ({kind}: {summary})"
    ok = code == 0 and t["alerts lost"] == 0 and t["actions doubled"] == 0
    failed = sorted(n for n, (s, _) in results.items() if s in ("failed", "error"))
    out = [head, "", "Totals"]
    out += [
        f"  {k:<22}{v:>8}" + ("   (must be 0)" if k in ("alerts lost", "actions doubled") else "")
        for k, v in t.items()
    ]
    out.append(render(records, results, md=False))
    if failed:
        out += ["", "Failed:", *(f"  {n}" for n in failed)]
    out += ["", "RESULT: " + ("OK" if ok else "NOT OK")]
    print("\n".join(out))
    if args.markdown:
        md = [f"# {head}", "", "| total | |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in t.items()]
        md.append(render(records, results, md=True))
        md += ["", f"**Result: {'OK' if ok else 'NOT OK'}**", ""]
        Path(args.markdown).write_text("\n".join(md))
    if not args.source and code != 0:
        return code
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
