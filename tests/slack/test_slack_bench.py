"""bench/slack_approvals.py runs end to end and accounts for every click (its
figures are a finding, never asserted)."""

from __future__ import annotations

from pathlib import Path

from bench.slack_approvals import measure


async def test_slack_bench_accounts_for_every_click(tmp_path: Path, capsys) -> None:
    result = await measure(5, f"sqlite:///{tmp_path}/state.db", tmp_path)
    assert result["clicks"] == 5 and result["steps_started"] == 5
    assert set(result["click_to_200_ms"]) == {"p50", "p99", "max"}
    assert set(result["click_to_step_started_ms"]) == {"p50", "p99", "max"}
    with capsys.disabled():
        print(f"\nslack approvals (5 clicks, SQLite): {result}")
