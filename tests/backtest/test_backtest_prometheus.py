"""``remediator backtest`` against a real Prometheus holding a known ALERTS history
(backfilled with promtool, see history_case.py): its figures equal the counts made
by hand here. Run as the installed CLI would be: ``python -m remediator backtest``."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.alert_history import HistoryPrometheus, binaries, openmetrics
from remediator.runbook_api.registry import load_entry_points
from tests.backtest import history_case
from tests.conftest import free_port
from tests.support import root_conftest

REPO = Path(__file__).resolve().parents[2]


def backtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", "backtest", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def approve_steps(runbook_id: str) -> int:
    runbook = load_entry_points().get(runbook_id)
    assert runbook is not None
    return sum(1 for s in runbook.steps if s.approval == "approve")


def as_json(history_url: str, case_files: tuple[Path, Path], *extra: str) -> dict[str, Any]:
    rules, config = case_files
    done = backtest(
        "--prometheus", history_url, "--since", "3d", "--rules", str(rules),
        "--config", str(config), "--json", *extra,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_figures_match_the_counts_made_by_hand(
    history_url: str, case_files: tuple[Path, Path]
) -> None:
    out = as_json(history_url, case_files)
    # DESIGN's keys, at the top and per rule (more may follow them).
    assert {
        "since", "until", "step_seconds", "series", "occurrences", "rules", "unmatched",
        "busiest_hour",
    } <= set(out)  # fmt: skip
    for rule in out["rules"]:
        assert {
            "rule", "runbook", "occurrences", "runs", "blocked", "approvals", "pages",
        } <= set(rule)  # fmt: skip
    assert {"start", "occurrences"} <= set(out["busiest_hour"])
    assert out["step_seconds"] == 60  # Prometheus's evaluation_interval, from its config API
    assert out["series"] == 5
    # polygon 4 (flapping), fmp 1, fmp's circuit 1, AlertStorm 6 (flapping), DiskFull 2
    assert out["occurrences"] == 4 + 1 + 1 + 6 + 2
    assert out["unmatched"] == 2  # DiskFull: no rule
    rules = {r["rule"]: r for r in out["rules"]}
    assert set(rules) == {"provider-errors", "alert-storm"}

    provider = rules["provider-errors"]
    assert provider["runbook"] == "RB-02"
    assert provider["occurrences"] == 6
    # polygon at 0 runs; 12 and 25 are within 30 min of it (cooldown); 40 runs.
    # fmp's two alerts start the same minute on one target: one runs, one finds the
    # lock held.
    assert provider["runs"] == 3
    assert provider["blocked"] == {
        "circuit_open": 0,
        "lock_busy": 1,
        "cooldown": 2,
        "rate_limit": 0,
        "blast_radius": 0,
    }
    assert provider["approvals"] == 3 * approve_steps("RB-02")
    # P2: three runs, plus one page per guard and clock hour (cooldown, lock_busy);
    # P1: polygon's 40-120 outlasts RB-02's page_after_seconds (30 min): escalated.
    assert provider["pages"] == {"P1": 1, "P2": 5}
    assert provider["escalated"] == 1

    storm = rules["alert-storm"]
    assert storm["runbook"] == "RB-03" and storm["occurrences"] == 6
    # 0 and 6 run; 12, 18, 24 are the 3rd-5th in the hour (rate limit); 75 runs.
    assert storm["runs"] == 3
    assert storm["blocked"]["rate_limit"] == 3 and sum(storm["blocked"].values()) == 3
    assert storm["approvals"] == 3 * approve_steps("RB-03") > 0
    assert storm["pages"] == {"P1": 3 + 1}

    # max_pages_per_hour 2. PagerDuty (P0, P1): storm 0, storm 6, then the rate-limit
    # page at 12 folds; the escalation at 70 and storm 75 page (0 and 6 are an hour
    # old). Slack (P2, P3): polygon 0, fmp 5; then the lock page (5), the cooldown
    # page (12) and polygon 40 fold.
    assert out["pagers"]["pagerduty"] | {"severities": None} == {
        "severities": None, "paged": 4, "folded": 1, "summaries": 1,
    }  # fmt: skip
    assert out["pagers"]["slack"] | {"severities": None} == {
        "severities": None, "paged": 2, "folded": 3, "summaries": 1,
    }  # fmt: skip
    assert provider["pagers"] == {
        "pagerduty": {"paged": 1, "folded": 0},
        "slack": {"paged": 2, "folded": 3},
    }
    assert storm["pagers"]["pagerduty"] == {"paged": 3, "folded": 1}

    t0 = datetime.fromtimestamp(history_case.T0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert out["busiest_hour"]["start"] == t0
    assert out["busiest_hour"]["occurrences"] == 13  # all but AlertStorm's 75
    assert any("annotations" in a for a in out["assumptions"])
    # The history Prometheus keeps 10 years: the 3 days asked are all in it.
    assert out["retention_seconds"] == 3650 * 86400 and out["warnings"] == []


def test_long_ranges_are_asked_in_chunks_prometheus_would_refuse_whole(
    history_url: str, case_files: tuple[Path, Path]
) -> None:
    # 3 days at 5 s is 51,841 points per series: one query_range is refused...
    end = history_case.T0 + 3 * 86400
    r = httpx.get(
        f"{history_url}/api/v1/query_range",
        params={"query": "ALERTS", "start": end - 3 * 86400, "end": end, "step": "5"},
    )
    assert r.status_code == 400 and "11,000" in r.json()["error"]
    # ...and the backtest, asking in chunks, finds the same history.
    fine = as_json(history_url, case_files, "--step", "5s")
    coarse = as_json(history_url, case_files)
    assert fine["step_seconds"] == 5
    assert fine["occurrences"] == coarse["occurrences"] == 14
    assert fine["rules"] == coarse["rules"]


def test_human_output_names_each_rule_and_what_it_cannot_know(
    history_url: str, case_files: tuple[Path, Path]
) -> None:
    rules, config = case_files
    done = backtest(
        "--prometheus", history_url, "--since", "3d", "--rules", str(rules),
        "--config", str(config),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "rule provider-errors -> RB-02 (P2)" in text
    assert "blocked       3 (lock_busy 1, cooldown 2)" in text
    assert "rule alert-storm -> RB-03 (P1)" in text
    assert "Busiest hour:" in text and "13 occurrences started" in text
    assert "ALERTS has no annotations" in text
    assert "silences or inhibitions" in text
    assert "every approve step is offered" in text  # approvals counted need their targets


def test_it_sends_no_page_even_with_pagers_configured(
    history_url: str, case_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """The pagers of the config point at a local capture server: it hears nothing."""
    heard: list[str] = []

    class Capture(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            heard.append(self.path)
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        config = tmp_path / "capture.yaml"
        config.write_text(
            "pagers:\n"
            f"  pagerduty: {{routing_key: 0123456789abcdef0123456789abcdef, url: {base}/pd}}\n"
            f"  slack: {{webhook_url: {base}/slack}}\n"
            f"  opsgenie: {{api_key: 0123456789abcdef, url: {base}/og}}\n"
        )
        out = as_json(history_url, (case_files[0], config))
    finally:
        server.shutdown()
        server.server_close()
    assert out["pagers"]["opsgenie"]["paged"] > 0  # it counted pages for every pager...
    assert heard == []  # ...and sent none


def test_prometheus_down_is_a_clear_error_and_exit_1(case_files: tuple[Path, Path]) -> None:
    rules, _ = case_files
    done = backtest("--prometheus", f"http://127.0.0.1:{free_port()}", "--rules", str(rules))
    assert done.returncode == 1
    assert "cannot read the alert history" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_bad_arguments_are_a_clear_error_and_exit_2(
    history_url: str, case_files: tuple[Path, Path]
) -> None:
    rules, _ = case_files
    cases = [
        (["--prometheus", "localhost:9090"], "--prometheus must be an http(s) URL"),
        (["--prometheus", "ftp://127.0.0.1/"], "--prometheus must be an http(s) URL"),
        (["--prometheus", history_url, "--since", "last week"], "--since"),
        (["--prometheus", history_url, "--since", "0s"], "--since must be positive"),
        (["--prometheus", history_url, "--step", "-5s"], "--step"),
        (["--prometheus", history_url, "--step", "500ms"], "--step must be at least 1s"),
        (["--prometheus", history_url, "--fail-rate", "2"], "--fail-rate"),
    ]
    for args, message in cases:
        done = backtest(*args, "--rules", str(rules))
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_bad_rules_exit_1_with_file_line_messages(history_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    matchers: ['alertname=\"A\"']\n    runbook: RB-99\n")
    done = backtest("--prometheus", history_url, "--rules", str(bad))
    assert done.returncode == 1
    assert f"{bad}:2" in done.stderr and "unknown runbook" in done.stderr


def test_a_range_with_no_alert_reports_zeros_and_no_busiest_hour(
    history_url: str, case_files: tuple[Path, Path]
) -> None:
    out = as_json(history_url, case_files, "--since", "1h")  # the history is 2 days old
    assert out["series"] == out["occurrences"] == out["unmatched"] == 0
    assert out["busiest_hour"] is None
    assert all(r["occurrences"] == r["runs"] == 0 for r in out["rules"])


def test_a_range_past_prometheus_retention_is_said_not_taken_as_quiet(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    case_files: tuple[Path, Path],
) -> None:
    """--since 30d against a Prometheus keeping 4 days (a default one keeps 15): the
    report warns that the days before are not in the history, rather than reading
    as a month in which nothing fired then."""
    if binaries() is None:
        root_conftest(request.config).service_missing("prometheus", FileNotFoundError("PATH"))
    prom = HistoryPrometheus(
        tmp_path_factory.mktemp("short"),
        openmetrics(history_case.series(), history_case.STEP),
        retention="4d",
    )
    rules = case_files[0]
    with prom as url:
        out = as_json(url, case_files, "--since", "30d")
        done = backtest("--prometheus", url, "--since", "30d", "--rules", str(rules))
    assert out["retention_seconds"] == 4 * 86400
    [warning] = out["warnings"]
    assert warning.startswith("Prometheus keeps 4 days of data (its storage retention)")
    assert out["occurrences"] == 14  # the history itself is all there
    assert done.returncode == 0, done.stderr
    assert f"Warning: {warning}" in done.stdout.splitlines()[:4]
