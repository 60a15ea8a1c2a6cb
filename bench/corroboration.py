"""Scenario 5 (optional: ``--only corroboration``), the cost of corroboration.

Principle 6: before a mutation, the daemon asks Prometheus whether the alert fires
(``targets.prometheus``). This scenario is scenario 2 (time to mitigation, Postgres
state, the same rate and duration) run twice on the same fingerprints: without
``targets.prometheus``, then with it pointing at a real Prometheus on loopback (the
Debian 2.42 binary) that fires every one of the bench's alerts.

Prometheus fires them for real: a static exposition file (served by
``python -m http.server`` on loopback) has one ``bench_alert_firing`` series per
planned alert, with exactly the alert's labels (``honor_labels`` keeps its ``job``
and ``instance``), and the alerting rule ``BenchMitigate: bench_alert_firing == 1``
(``for: 0s``, evaluated every second) turns each into a firing ``ALERTS`` series.
The load starts once ``ALERTS`` shows all of them firing.

Reported: both TTM rows, and the added time and ratio (with / without) of the
median and p99 of the exact runs and of end-to-end. Not part of the default run.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench import common, drive, payloads, runbook, ttm
from bench.plan import Plan

METRIC = "bench_alert_firing"


def _exposition(fingerprints: list[str]) -> str:
    lines = [f"# TYPE {METRIC} gauge"]
    for fp in fingerprints:
        labels = ",".join(f'{k}="{v}"' for k, v in payloads.labels(fp).items())
        lines.append(f"{METRIC}{{{labels}}} 1")
    return "\n".join(lines) + "\n"


def _firing(url: str) -> int:
    query = f'count(ALERTS{{alertname="{runbook.ALERTNAME}",alertstate="firing"}})'
    body = orjson.loads(
        common.http_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    )
    result = body["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def _version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "?"


def _delta(without: dict[str, Any], with_: dict[str, Any], view: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for q in ("p50_ms", "p99_ms"):
        a, b = without[view][q], with_[view][q]
        out[f"added_{q}"] = b - a
        out[f"ratio_{q.removesuffix('_ms')}"] = b / a if a else float("nan")
    return out


def run(workdir: Path, plan: Plan) -> dict[str, Any]:
    binary = shutil.which("prometheus")
    if binary is None:
        return {"skipped": "prometheus is not installed (Debian package prometheus)"}
    home = workdir / "corroboration"
    (home / "exposition").mkdir(parents=True, exist_ok=True)
    nonce = drive.new_nonce()
    total = int(plan.ttm_rate * plan.ttm_seconds)
    fingerprints = [payloads.fingerprint(nonce, 0, i) for i in range(total)]
    (home / "exposition" / "metrics").write_text(_exposition(fingerprints))
    rules = {
        "groups": [
            {
                "name": "bench",
                "interval": "1s",
                "rules": [
                    {"alert": runbook.ALERTNAME, "expr": f"{METRIC} == 1", "for": "0s"},
                ],
            }
        ]
    }
    (home / "rules.yml").write_text(yaml.safe_dump(rules))
    files_port, prom_port = common.free_port(), common.free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(home / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "bench-alerts",
                "honor_labels": True,
                "static_configs": [{"targets": [f"{common.HOST}:{files_port}"]}],
            }
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    files = common.Child(
        "exposition",
        [
            common.PYTHON,
            "-m",
            "http.server",
            "--bind",
            common.HOST,
            "--directory",
            str(home / "exposition"),
            str(files_port),
        ],
        home / "exposition.log",
    )
    prom = common.Child(
        "prometheus",
        [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address={common.HOST}:{prom_port}",
        ],
        home / "prometheus.log",
    )
    url = f"http://{common.HOST}:{prom_port}"
    try:
        files.start()
        common.wait_http(f"http://{common.HOST}:{files_port}/metrics", files)
        prom.start()
        common.wait_http(url + "/-/ready", prom)
        deadline = time.monotonic() + 60
        firing = 0
        while firing < total:
            if time.monotonic() > deadline or not prom.alive():
                raise RuntimeError(
                    f"Prometheus fires {firing} of {total} bench alerts after 60 s:\n{prom.tail()}"
                )
            time.sleep(0.5)
            firing = _firing(url)
        without = ttm.run_backend("postgres", workdir, plan, nonce=nonce, name="-plain")
        with_ = ttm.run_backend(
            "postgres", workdir, plan, nonce=nonce, prometheus=url, name="-corroborated"
        )
        firing_after = _firing(url)
    finally:
        prom.stop()
        files.stop()
    without["corroboration"], with_["corroboration"] = "off", "on"
    return {
        "prometheus": _version(binary),
        "firing_series": firing_after,
        "rows": [without, with_],
        "runs": _delta(without, with_, "runs"),
        "end_to_end": _delta(without, with_, "end_to_end"),
    }
