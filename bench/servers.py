"""Start the things under test, each as its own process on a free loopback port:
the bare aiohttp ceiling, ``remediator serve`` on SQLite or on Postgres (a fresh
schema), and the in-process daemon with the bench runbook.

A ``Server`` owns its process and its state (SQLite file or Postgres schema) and
removes the schema when stopped. Nothing here ever binds anything but 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench import common, runbook

# Scenario 1 and 3 rules: valid, loaded, and matching none of the bench alerts, so
# every occurrence is journaled (durably, before the 202) as already processed and
# no run starts: the scenarios measure intake, not the engine.
NO_MATCH_RULES = """\
rules:
  - name: bench-never-matches
    matchers: ['alertname="BenchNeverMatches"']
    runbook: RB-01
"""


@dataclass
class Server:
    kind: str  # ceiling | sqlite | postgres
    url: str  # base URL
    child: common.Child
    state_url: str | None = None
    schemas: list[str] = field(default_factory=list)

    @property
    def webhook(self) -> str:
        return self.url + "/api/v1/alerts"

    @property
    def pid(self) -> int:
        return self.child.pid

    def stop(self) -> None:
        self.child.stop()
        for schema in self.schemas:
            common.drop_schema(schema)
        self.schemas = []


def _state(kind: str, workdir: Path, schemas: list[str]) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'state.db'}"
    schema = common.new_schema("bench_state")
    schemas.append(schema)
    return common.with_search_path(common.PG_DSN, schema)


def start_ceiling(workdir: Path) -> Server:
    port = common.free_port()
    child = common.Child(
        "ceiling",
        [common.PYTHON, "-m", "bench.ceiling", "--port", str(port)],
        workdir / "ceiling.log",
    ).start()
    url = f"http://{common.HOST}:{port}"
    try:
        common.wait_http(url + "/healthz", child)
    except RuntimeError:
        child.stop()
        raise
    return Server("ceiling", url, child)


def start_serve(kind: str, workdir: Path, rules: str = NO_MATCH_RULES) -> Server:
    """``remediator serve`` exactly as a user runs it, from a config file."""
    workdir.mkdir(parents=True, exist_ok=True)
    schemas: list[str] = []
    state = _state(kind, workdir, schemas)
    port = common.free_port()
    (workdir / "rules.yaml").write_text(rules)
    config = {
        "listen": f"{common.HOST}:{port}",
        "mode": "dry-run",
        "rules": str(workdir / "rules.yaml"),
        "state": state,
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    child = common.Child(
        f"remediator serve ({kind})",
        [common.PYTHON, "-m", "remediator", "serve", "--config", str(workdir / "config.yaml")],
        workdir / "daemon.log",
        cwd=workdir,
    ).start()
    server = Server(kind, f"http://{common.HOST}:{port}", child, state, schemas)
    try:
        common.wait_http(server.url + "/readyz", child)
    except RuntimeError:
        server.stop()
        raise
    return server


def start_ttm_daemon(
    kind: str,
    workdir: Path,
    target_dsn: str,
    *,
    prometheus: str | None = None,
    rules: str = runbook.RULES_YAML,
    workers: int | None = None,
    split_pagers: bool = False,
) -> Server:
    """The daemon with the bench runbooks registered (see bench/ttm_daemon.py), mode
    live; with ``prometheus``, it corroborates every mitigation against that
    Prometheus; ``split_pagers``: P0/P1 and P2/P3 pages go to two capture pagers."""
    workdir.mkdir(parents=True, exist_ok=True)
    schemas: list[str] = []
    state = _state(kind, workdir, schemas)
    port = common.free_port()
    (workdir / "rules.yaml").write_text(rules)
    child = common.Child(
        f"ttm daemon ({kind})",
        [
            common.PYTHON,
            "-m",
            "bench.ttm_daemon",
            "--port",
            str(port),
            "--state",
            state,
            "--target",
            target_dsn,
            "--rules",
            str(workdir / "rules.yaml"),
            *(["--prometheus", prometheus] if prometheus else []),
            *(["--workers", str(workers)] if workers else []),
            *(["--split-pagers"] if split_pagers else []),
        ],
        workdir / "daemon.log",
    ).start()
    server = Server(kind, f"http://{common.HOST}:{port}", child, state, schemas)
    try:
        common.wait_http(server.url + "/readyz", child)
    except RuntimeError:
        server.stop()
        raise
    return server
