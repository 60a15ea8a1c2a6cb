"""``remediator backtest``: the alert history in Prometheus, run through the rules and
every guard in simulated time. It reads Prometheus and nothing else: it touches no
target, no pager, no cache and no state store.

    history (clients/prometheus_range.py) -> occurrences.py -> simulate.py
        (guards.py, paging.py) -> report.py -> command.py (the CLI)
"""
