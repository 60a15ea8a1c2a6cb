"""Figures from the reliability tests, for ``tools/reliability_report.py``.

A test calls ``record(section, **figures)`` once it has measured something; when
``$REMEDIATOR_RELIABILITY_OUT`` names a file, one JSON line is appended to it:

    {"section": "crash", "test": "tests/reliability/test_crash_recovery.py::test_x",
     "at": 1795000000.0, "figures": {"kills": 12, "alerts": 300, "lost": 0, ...}}

Without the variable nothing is written, so the suite runs the same either way.
Record after the assertions: a failed test records nothing, and the report shows it
as failed from pytest's own result.

Sections and the figure names the report reads (other figures are printed as-is):

    load       alerts, requests, replicas, duration_s       (load held)
    ha, crash, shutdown
               alerts, runs, lost, doubled, kills, sigterms, duration_s
    faults     injected, survived                            (one record per fault)
    hostile    tried, rejected, server_errors                (one record per input kind)

``lost`` and ``doubled`` are summed over every record and must be 0. A record may
carry ``name=`` to label its row (default: the test's name).

This module must never fail a test because the results file cannot be written: the
figures are a report, not an assertion.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

ENV = "REMEDIATOR_RELIABILITY_OUT"
SECTIONS = ("load", "ha", "crash", "shutdown", "faults", "hostile", "starvation")


def current_test() -> str:
    """The running test's node id, as pytest sets it in the environment."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]


def record(section: str, **figures: Any) -> None:
    """Append one line of figures for ``section`` (no-op without the env variable)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; one of {SECTIONS}")
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps(
        {"section": section, "test": current_test(), "at": time.time(), "figures": figures},
        default=str,
        sort_keys=True,
    )
    try:
        # One write of one line with O_APPEND: lines from parallel tests do not interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # the report will show the test without figures


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record in a results file, in the order written (bad lines skipped)."""
    out: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as f:
            for raw in f:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("figures"), dict):
                    out.append(rec)
    except FileNotFoundError:
        return []
    return out
