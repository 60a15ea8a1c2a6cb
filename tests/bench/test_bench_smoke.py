"""The benchmark suite works end to end (bench/run.py --smoke): every scenario runs
against real servers, real SQLite and Postgres, and its accounting adds up.

These tests check that the bench measures correctly, never how fast anything is:
no figure here is compared with a speed.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import common, payloads
from tests.conftest import service_missing

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        service_missing("wrk (Debian package wrk)", FileNotFoundError("wrk"))
    problem = common.pg_reachable()
    if problem is not None:
        service_missing("PostgreSQL", ConnectionError(problem))
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--smoke",
            "--rounds",  # two rounds: the medians and sums of scenario 1 are checked below
            "2",
            "--out",
            str(out / "results.json"),
            "--markdown",
            str(out / "results.md"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    results["_stdout"] = proc.stdout
    results["_markdown"] = (out / "results.md").read_text()
    return results


def test_intake_drives_the_ceiling_and_the_daemon_with_distinct_valid_alerts(
    smoke: dict[str, Any],
) -> None:
    rows = {r["target"]: r for r in smoke["intake"]["rows"]}
    assert set(rows) == {"ceiling", "sqlite"}
    for row in rows.values():
        assert row["generator"] == "wrk"
        assert row["requests"] > 0 and row["non202"] == 0, row
        # Every alert of every 202 was new: the Lua script never repeats a fingerprint
        # and the daemon accepted every body it generated.
        assert row["journaled"] == row["requests"] * row["payload_alerts"], row
        assert row["duplicates"] == 0
    ratios = smoke["intake"]["ratios"]["20"]
    assert set(ratios) == {"sqlite"}
    assert 0 < ratios["sqlite"] < math.inf


def test_intake_rounds_pair_each_daemon_run_with_its_own_ceiling_and_report_medians(
    smoke: dict[str, Any],
) -> None:
    intake = smoke["intake"]
    assert intake["rounds"] == 2
    runs = intake["measurements"]
    by_target = {t: [m for m in runs if m["target"] == t] for t in ("ceiling", "sqlite")}
    assert all(len(ms) == 2 for ms in by_target.values()), runs
    # Ratios are taken within a round (ceiling i, daemon i), then the median of them.
    rounds = zip(by_target["ceiling"], by_target["sqlite"], strict=True)
    pairs = [s["rps"] / c["rps"] for c, s in rounds]
    assert intake["ratios_by_round"]["20"]["sqlite"] == pytest.approx(pairs)
    assert intake["ratios"]["20"]["sqlite"] == pytest.approx(sum(pairs) / 2)
    # The reported row: counts summed over the rounds, rates the medians.
    row = next(r for r in intake["rows"] if r["target"] == "sqlite")
    assert row["rounds"] == 2
    assert row["requests"] == sum(m["requests"] for m in by_target["sqlite"])
    assert row["rps"] == pytest.approx(sum(m["rps"] for m in by_target["sqlite"]) / 2)
    assert "medians of 2 rounds" in smoke["_stdout"]


def test_time_to_mitigation_mitigates_every_alert_once_and_reads_three_clocks(
    smoke: dict[str, Any],
) -> None:
    (row,) = smoke["ttm"]["rows"]
    assert row["backend"] == "postgres"  # the smoke's Postgres state store
    assert row["sent"] > 0 and row["accepted"] == row["sent"]
    assert row["mitigated"] == row["sent"]
    assert row["missed"] == 0 and row["doubled"] == 0
    assert row["histogram"]["count"] == row["sent"]
    for view in (row["histogram"], row["runs"], row["end_to_end"]):
        assert view["p50_ms"] > 0 and view["p99_ms"] >= view["p50_ms"]
    # The start-up / steady split covers every mitigated run once; the smoke's storm
    # is shorter than the cold mark, so all of it is start-up.
    assert row["runs_cold"]["count"] + row["runs_steady"]["count"] == row["mitigated"]
    assert row["runs_cold"]["count"] == row["mitigated"]
    assert row["runs_cold"]["p99_ms"] == row["runs"]["p99_ms"]
    assert "p99 first 3 s" in smoke["_markdown"]


def test_p0_each_alert_gets_one_first_page_while_the_parked_runs_stay_parked(
    smoke: dict[str, Any],
) -> None:
    (row,) = smoke["p0"]["rows"]
    assert row["backend"] == "postgres"
    # The runs parked before the load are still parked after it: their waits went on.
    assert row["parked_before"] == row["parked_after"] == row["parked_planned"] == 2
    p2 = row["p2"]
    assert p2["sent"] == p2["planned"] == p2["requests"] * p2["per_payload"] > 0
    assert p2["accepted"] == p2["sent"] and p2["non202"] == 0 and not p2["errors"]
    # Stamped or still queued at the end of the load (a few may be in a worker's hands).
    assert p2["processed"] + p2["backlog"] <= p2["accepted"] <= p2["runs_at_stop"] + p2["backlog"]
    p0 = row["p0"]
    assert p0["planned"] == p0["sent"] == p0["accepted"] == 3
    # One run per P0 alert, one first page per run, each its own incident (not folded)
    # and handed to the pager.
    assert p0["runs"] == 3 and p0["doubled_runs"] == 0
    assert p0["first_pages"] == 3 and p0["doubled_pages"] == 0 and p0["folded"] == 0
    assert p0["paged"] == 3 and p0["unpaged"] == 0 and p0["undelivered"] == 0
    e2e, daemon, delivered = row["end_to_end"], row["daemon"], row["delivered"]
    for view in (e2e, daemon, delivered):
        assert 0 < view["p50_ms"] <= view["p99_ms"] <= view["max_ms"] < math.inf
    # Per alert: sent <= received <= page queued <= page delivered, on one clock.
    assert daemon["max_ms"] <= e2e["max_ms"] <= delivered["max_ms"]
    assert "6. Time to first P0 page" in smoke["_markdown"]


def test_storm_journal_holds_each_distinct_occurrence_exactly_once(
    smoke: dict[str, Any],
) -> None:
    (row,) = smoke["storm"]["rows"]
    assert row["completed"] and row["occurrences"] == row["planned"]
    assert row["distinct"] == row["occurrences"] // 2
    assert row["journal_rows"] == row["distinct"]
    assert row["lost"] == 0 and row["lost_after_202"] == 0 and row["doubled"] == 0
    assert row["unexpected"] == 0
    assert row["replies_journaled"] == row["distinct"]
    assert row["replies_duplicates"] == row["occurrences"] - row["distinct"]
    assert row["peak_rss_mb"] >= row["rss_start_mb"] > 0


def test_rule_scaling_matches_one_rule_per_named_alert(smoke: dict[str, Any]) -> None:
    rows = smoke["rules"]["rows"]
    assert [r["rules"] for r in rows] == [10, 100]
    for r in rows:
        # Half the alerts are named by a pinned rule (exactly one matches), half by none.
        assert r["matched"] == r["alerts"] // 2
        assert r["select_us_per_alert"] > 0


def test_backtest_finds_every_planned_series_and_occurrence_in_prometheus(
    smoke: dict[str, Any],
) -> None:
    (row,) = smoke["backtest"]["rows"]
    assert row["series"] == row["series_planned"] > 0
    assert row["occurrences"] == row["occurrences_planned"] > 0
    # A third of the series are alerts no shipped rule acts on.
    assert 0 < row["unmatched"] < row["occurrences"]
    assert row["runs"] + row["blocked"] > 0
    assert row["seconds"] > 0 and row["peak_rss_mb"] > 0
    assert "7. Backtest" in smoke["_markdown"]


def test_report_prints_every_target_with_a_verdict(smoke: dict[str, Any]) -> None:
    targets = smoke["targets"]
    scenarios = {t["scenario"] for t in targets}
    assert scenarios == {"1 intake", "2 ttm", "3 storm", "4 rules", "6 p0", "7 backtest"}
    assert {t["result"] for t in targets} <= {"PASS", "MISS"}
    assert "Targets" in smoke["_stdout"] and "| scenario | target |" in smoke["_markdown"]


def test_storm_plan_repeats_each_occurrence_the_planned_share() -> None:
    batches, distinct = payloads.storm_plan(0xABCDEF01, 1000, 0.5, 20)
    sent = [fp for b in batches for fp in b]
    assert len(sent) == 1000 and len(distinct) == 500 == len(set(sent))
    assert all(len(b) == 20 for b in batches)


def test_payload_template_is_a_valid_alertmanager_v4_body() -> None:
    from remediator.models import WebhookPayload

    fps = [payloads.fingerprint(7, 1, i) for i in range(3)]
    body = payloads.template("BenchIntake").body(fps)
    parsed = WebhookPayload.model_validate_json(body)
    assert [a.fingerprint for a in parsed.alerts] == fps
    assert parsed.alerts[0].labels["instance"] == f"host-{fps[0]}"


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.01, 10.0), (0.02, 30.0), (0.05, 40.0), (math.inf, 40.0)]
    # rank 20 of 40 falls halfway through the (0.01, 0.02] bucket.
    assert common.histogram_quantile(0.5, buckets) == pytest.approx(0.015)
    assert math.isnan(common.histogram_quantile(0.5, [(math.inf, 0.0)]))


def test_report_states_the_postgres_durability_settings_it_ran_on(smoke: dict[str, Any]) -> None:
    # What a durable commit cost depends on these: the figures are read against them.
    settings = smoke["postgres_settings"]
    assert set(settings) >= {"fsync", "synchronous_commit", "full_page_writes", "autovacuum"}
    assert settings["fsync"] in {"on", "off"}
    assert f"fsync {settings['fsync']}" in smoke["_markdown"]
    fsync_note = any("fsync off" in n for n in smoke["notes"])
    assert fsync_note == (settings["fsync"] == "off")
