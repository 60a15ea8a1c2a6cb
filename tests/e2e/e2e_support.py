"""Plumbing for the end-to-end test: child processes, the HTTP capture server, config
files built from the shipped ones, Prometheus queries and the Grafana panel queries.

Import as ``from tests.e2e.e2e_support import ...``. Nothing here listens on or
talks to anything but 127.0.0.1, and every process started here is stopped by its
owner's finalizer (and, on Linux, killed by the kernel if pytest itself dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
GRAFANA_DASHBOARDS = REPO / "grafana" / "dashboards"
RULES_DIR = REPO / "rules"
NS = "prod"

T = TypeVar("T")


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGTERM the child when pytest dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_pdeathsig


class Service:
    """One child process with its output in a log file; ``stop()`` always reaps it."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.log_path = cwd / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait ``grace`` seconds, then SIGKILL. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def wait_http_ok(url: str, service: Service, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if not service.running:
                raise AssertionError(
                    f"{service.name} exited ({service.proc and service.proc.returncode}) before"
                    f" it was ready:\n{service.tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{service.name} not ready after {timeout} s:\n{service.tail()}"
                )
            await asyncio.sleep(0.1)


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout: float = 45.0,
    interval: float = 0.25,
    diagnostics: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``check`` until it returns something truthy; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{diagnostics()}")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------ capture server


@dataclass
class Captured:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    at: float = field(default_factory=time.time)


class CaptureServer:
    """The local HTTP peer standing in for PagerDuty, Slack, the providers and the app.

    POST /pagerduty/v2/enqueue   PagerDuty Events v2 (202, as PagerDuty answers)
    POST /slack/services/...     Slack incoming webhook (200 "ok")
    POST /oncall/v2/enqueue      Alertmanager's own PagerDuty receiver (for people)
    GET  /status/{provider}      {"status": "ok"} or {"status": "major_outage"}
    POST /app/execute            the DawsOS freshness gate (200)
    """

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self.down: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/pagerduty/v2/enqueue", self._pagerduty)
        app.router.add_post("/oncall/v2/enqueue", self._pagerduty)
        app.router.add_post("/slack/{tail:.*}", self._slack)
        app.router.add_get("/status/{provider}", self._status)
        app.router.add_post("/app/execute", self._execute)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append(Captured(request.method, request.path, body, dict(request.headers)))
        return body

    async def _pagerduty(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        key = body.get("dedup_key") if isinstance(body, dict) else None
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )

    async def _slack(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="ok")

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        provider = request.match_info["provider"]
        if provider in self.down:
            return web.json_response({"status": "major_outage", "provider": provider})
        return web.json_response({"status": "ok", "provider": provider})

    async def _execute(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"status": "ok", "pattern_id": "portfolio_overview"})

    # assertions helpers

    def pagerduty(self, action: str | None = None) -> list[dict[str, Any]]:
        return [
            r.body
            for r in self.requests
            if r.path == "/pagerduty/v2/enqueue"
            and (action is None or r.body.get("event_action") == action)
        ]

    def slack(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path.startswith("/slack/")]

    def summary(self) -> str:
        return "\n".join(f"{r.method} {r.path} {str(r.body)[:200]}" for r in self.requests[-30:])


# ----------------------------------------------------------------- running services


@dataclass
class DaemonHandle:
    url: str
    listen: str
    service: Service
    webhook_token: str
    operator_token: str
    state: str  # the state store's DSN


@dataclass
class AlertmanagerHandle:
    url: str
    service: Service


@dataclass
class PrometheusHandle:
    url: str
    service: Service


# ----------------------------------------------------------------------- config files


def alertmanager_config(
    *, webhook_url: str, token_file: Path, oncall_url: str, oncall_key_file: Path
) -> dict[str, Any]:
    """The shipped deploy/alertmanager/alertmanager.yml, pointed at this test's peers.

    Only addresses, secret files and timings change; routes, grouping and the
    receiver settings are the shipped ones. group_interval stays at 10 s: below that,
    Alertmanager's retry loops overlap and duplicate sends.
    """
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="10s", repeat_interval="4h")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            if hook["url"].endswith("/api/v1/alerts"):
                hook["url"] = webhook_url
                hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        for pd in receiver.get("pagerduty_configs", []):
            pd["routing_key_file"] = str(oncall_key_file)
            pd["url"] = oncall_url
    return config


def prometheus_config(*, daemon: str, alertmanager: str, rule_files: list[Path]) -> dict[str, Any]:
    """The shipped deploy/prometheus/prometheus.yml, scraping this test's daemon every 1 s."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="5s")
    config["rule_files"] = [str(p) for p in rule_files]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "remediator"]
    job["static_configs"][0]["targets"] = [daemon]
    return config


def alert_labels(alertname: str, **extra: str) -> dict[str, str]:
    """The labels the shipped Prometheus rule attaches to ``alertname``, plus ``extra``."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "dawsos-alerts.yml").read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alertname:
                return {"alertname": alertname, **rule["labels"], **extra}
    raise KeyError(f"no alert {alertname} in deploy/prometheus/dawsos-alerts.yml")


# ------------------------------------------------------------------------- Prometheus


class PromAPI:
    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url

    async def query(self, expr: str) -> list[dict[str, Any]]:
        r = await self.client.get(
            f"{self.url}/api/v1/query", params={"query": expr, "time": f"{time.time():.3f}"}
        )
        assert r.status_code == 200, f"{expr}: HTTP {r.status_code} {r.text}"
        data = r.json()["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    async def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        r = await self.client.get(
            f"{self.url}/api/v1/query_range",
            params={"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1s"},
        )
        assert r.status_code == 200, f"{expr}: HTTP {r.status_code} {r.text}"
        return list(r.json()["data"]["result"])

    async def label_values(self, label: str, match: str) -> list[str]:
        r = await self.client.get(
            f"{self.url}/api/v1/label/{label}/values", params={"match[]": match}
        )
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    async def value(self, expr: str) -> float | None:
        """The single value of ``expr`` now, or None when it has no result."""
        result = await self.query(expr)
        return float(result[0]["value"][1]) if result else None


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    return [v for v in (float(s["value"][1]) for s in result) if not math.isnan(v)]


# ---------------------------------------------------------------- Grafana dashboards


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    where: str  # "panel title/refId" or "annotation NAME"
    expr: str
    annotation: bool = False


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(GRAFANA_DASHBOARDS.glob("*.json"))
    }


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows hold their panels when collapsed


def panel_queries(name: str, dashboard: dict[str, Any]) -> list[PanelQuery]:
    out = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            out.append(PanelQuery(name, f"{panel['title']}/{target['refId']}", target["expr"]))
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "expr" in ann:
            out.append(PanelQuery(name, f"annotation {ann['name']}", ann["expr"], True))
    return out


def query_variables(dashboard: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Query variables as name -> (metric, label) of their ``label_values(metric, label)``."""
    out = {}
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        inner = query.strip()
        assert inner.startswith("label_values(") and inner.endswith(")"), query
        metric, label = (s.strip() for s in inner[len("label_values(") : -1].split(","))
        out[var["name"]] = (metric, label)
    return out


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables, longest name first (``$__rate_interval`` before ``$__r``)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr}"
    return expr


def environ(**extra: str) -> dict[str, str]:
    """The child environment: this interpreter's, the repo importable, proxies off."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["PYTHONPATH"] = str(REPO)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env
