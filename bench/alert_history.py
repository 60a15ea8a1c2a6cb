"""A known ``ALERTS`` history in a real Prometheus, for the backtest's tests and bench.

``openmetrics`` writes the firing intervals of some label sets as the points the rule
evaluation would have written (``ALERTS{alertstate="firing",...} 1`` every ``step``
seconds); ``HistoryPrometheus`` backfills them with ``promtool tsdb
create-blocks-from openmetrics`` and starts the Debian ``prometheus`` on a free
loopback port on that storage, with a retention long enough to keep the blocks.

Where an interval ends, rule evaluation writes a staleness marker, which ends the
series at once; OpenMetrics cannot carry that marker, so a plain NaN point is written
there instead (without it, a query would see the last point for five more minutes,
Prometheus's lookback). ``remediator backtest`` counts a NaN as not firing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import common

# (labels, [(start, end), ...]) in unix seconds, end exclusive: the series fires at
# start, start + step, ... while < end.
Intervals = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class AlertSeries:
    labels: Mapping[str, str]
    intervals: Intervals


def _selector(labels: Mapping[str, str]) -> str:
    pairs = {"alertstate": "firing", **labels}
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items()))
    return f"ALERTS{{{inner}}}"


def openmetrics_lines(series: Iterable[AlertSeries], step: float) -> Iterable[tuple[float, str]]:
    for s in series:
        sel = _selector(s.labels)
        for start, end in s.intervals:
            t = start
            while t < end:
                yield t, f"{sel} 1 {t:.0f}"
                t += step
            yield t, f"{sel} NaN {t:.0f}"


def openmetrics(series: Iterable[AlertSeries], step: float) -> list[str]:
    """The OpenMetrics texts of every point, one per day, each in time order.

    One file per day: promtool 2.42 reads its whole input once per 2-hour block it
    writes, so a month in one file was read 360 times (9 minutes for 1,000 series).
    """
    days: dict[int, list[tuple[float, str]]] = {}
    for t, line in openmetrics_lines(series, step):
        days.setdefault(int(t // 86400), []).append((t, line))
    texts = []
    for day in sorted(days):
        lines = sorted(days.pop(day), key=lambda item: item[0])
        texts.append(
            "# TYPE ALERTS gauge\n" + "".join(line + "\n" for _, line in lines) + "# EOF\n"
        )
    return texts


def binaries() -> tuple[str, str] | None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    return (prometheus, promtool) if prometheus and promtool else None


class HistoryPrometheus:
    """``with HistoryPrometheus(workdir, texts, evaluation_interval="1m") as url: ...``"""

    def __init__(
        self,
        workdir: Path,
        texts: list[str],
        *,
        evaluation_interval: str = "1m",
        retention: str = "3650d",
    ) -> None:
        found = binaries()
        if found is None:
            raise FileNotFoundError("prometheus and promtool (Debian package prometheus)")
        self.prometheus, self.promtool = found
        self.home = workdir
        self.home.mkdir(parents=True, exist_ok=True)
        self.texts = texts
        self.evaluation_interval = evaluation_interval
        self.retention = retention
        self.port = common.free_port()
        self.url = f"http://{common.HOST}:{self.port}"
        self.child: common.Child | None = None
        self.backfill_seconds = 0.0

    def backfill(self) -> None:
        data = self.home / "data"
        data.mkdir(exist_ok=True)
        started = time.monotonic()
        source = self.home / "history.om"
        while self.texts:
            source.write_text(self.texts.pop(0))  # dropped as written: months are big
            argv = [self.promtool, "tsdb", "create-blocks-from", "openmetrics", "-q"]
            done = subprocess.run(
                [*argv, str(source), str(data)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"promtool backfill failed:\n{done.stdout}\n{done.stderr}")
        source.unlink(missing_ok=True)
        self.backfill_seconds = time.monotonic() - started

    def start(self) -> str:
        config = {"global": {"evaluation_interval": self.evaluation_interval}}
        (self.home / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.child = common.Child(
            "prometheus",
            [
                self.prometheus,
                f"--config.file={self.home / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.home / 'data'}",
                # Blocks older than the retention are dropped at start: keep them all.
                f"--storage.tsdb.retention.time={self.retention}",
                # No compaction of the backfilled 2 h blocks while a bench measures.
                "--storage.tsdb.min-block-duration=2h",
                "--storage.tsdb.max-block-duration=2h",
                f"--web.listen-address={common.HOST}:{self.port}",
            ],
            self.home / "prometheus.log",
            cwd=self.home,
        ).start()
        common.wait_http(self.url + "/-/ready", self.child, timeout=60)
        return self.url

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def __enter__(self) -> str:
        self.backfill()
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
