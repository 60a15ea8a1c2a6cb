"""The known alert history of the end-to-end backtest test, and its rules.

Times are minutes after T0, an hour boundary two days ago; ALERTS points every minute
(Prometheus's evaluation_interval is 1m), end exclusive.

    ProviderErrorRateHigh{provider=polygon}  0-10, 12-20, 25-28, 40-120   (flapping)
    ProviderErrorRateHigh{provider=fmp}      5-15
    ProviderCircuitBreakerOpen{provider=fmp} 5-15   (same target, same minute)
    AlertStorm                               0-3, 6-9, 12-15, 18-21, 24-27, 75-80
    DiskFull{instance=db-1}                  30-45, 50-55  (no rule)
"""

from __future__ import annotations

import time

from bench.alert_history import AlertSeries

STEP = 60.0
MIN = 60.0
T0 = (int(time.time()) // 3600 - 48) * 3600.0

RULES = """
rules:
  - name: provider-errors
    matchers: ['alertname=~"ProviderErrorRateHigh|ProviderCircuitBreakerOpen"']
    runbook: RB-02
    cooldown: 30m
  - name: alert-storm
    matchers: ['alertname="AlertStorm"']
    runbook: RB-03
    max_runs_per_hour: 2
"""

CONFIG = """
pagers:
  pagerduty: {routing_key: "0123456789abcdef0123456789abcdef", url: "http://127.0.0.1:9/pd"}
  slack: {webhook_url: "http://127.0.0.1:9/slack"}
  max_pages_per_hour: 2
"""


def _minutes(*pairs: tuple[int, int]) -> list[tuple[float, float]]:
    return [(T0 + a * MIN, T0 + b * MIN) for a, b in pairs]


def series() -> list[AlertSeries]:
    return [
        AlertSeries(
            {"alertname": "ProviderErrorRateHigh", "provider": "polygon"},
            _minutes((0, 10), (12, 20), (25, 28), (40, 120)),
        ),
        AlertSeries({"alertname": "ProviderErrorRateHigh", "provider": "fmp"}, _minutes((5, 15))),
        AlertSeries(
            {"alertname": "ProviderCircuitBreakerOpen", "provider": "fmp"}, _minutes((5, 15))
        ),
        AlertSeries(
            {"alertname": "AlertStorm"},
            _minutes((0, 3), (6, 9), (12, 15), (18, 21), (24, 27), (75, 80)),
        ),
        AlertSeries({"alertname": "DiskFull", "instance": "db-1"}, _minutes((30, 45), (50, 55))),
    ]
