"""A real Prometheus (the Debian binary) holding a known ALERTS history, backfilled
with promtool; shared by the module that needs it (it takes a few seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.alert_history import AlertSeries, HistoryPrometheus, binaries, openmetrics
from tests.backtest import history_case
from tests.support import root_conftest


@pytest.fixture(scope="module")
def history_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if binaries() is None:
        root_conftest(request.config).service_missing(
            "prometheus and promtool", FileNotFoundError("not on PATH")
        )
    series: list[AlertSeries] = history_case.series()
    prom = HistoryPrometheus(
        tmp_path_factory.mktemp("history"), openmetrics(series, history_case.STEP)
    )
    with prom as url:
        yield url


@pytest.fixture
def case_files(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(history_case.RULES)
    config = tmp_path / "config.yaml"
    config.write_text(history_case.CONFIG)
    return rules, config
