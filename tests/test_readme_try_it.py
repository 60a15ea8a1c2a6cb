"""The README's "Try it" works as written: its alert starts a run on the shipped rules,
and the outputs it shows are the ones the commands print now."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port
from tests.support import wait_ready

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    return README[start : README.index("\n## ", start + 1)]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def _try_it_payload() -> dict[str, Any]:
    [curl, *_] = _blocks(_section("Try it"), "sh")
    body = re.search(r"-d '(.*?)'\n", curl, re.S)
    assert body is not None, curl
    payload: dict[str, Any] = json.loads(body.group(1))
    return payload


def _cli(*argv: str, cwd: Path, data: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REMEDIATOR_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "remediator", *argv],
        input=data, cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_try_it_uses_the_venv_it_installed() -> None:
    section = _section("Try it")
    assert ".venv/bin/remediator" in section and ". .venv/bin/activate" in section
    assert re.search(r"^remediator ", section, re.M) is None  # never a bare command line


async def test_the_try_it_alert_starts_a_run_on_the_shipped_rules(tmp_path: Path) -> None:
    payload = _try_it_payload()
    assert payload["alerts"][0]["labels"]["service"] == "dawsos"
    port = free_port()
    cfg = tmp_path / "remediator.yaml"
    cfg.write_text(f"rules: {ROOT / 'rules'}\nlisten: 127.0.0.1:{port}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remediator", "serve", "--config", str(cfg)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
                await wait_ready(f"http://127.0.0.1:{port}", proc)
                r = await c.post("/api/v1/alerts", json=payload)
                assert r.status_code == 202 and r.json()["journaled"] == 1, r.text
                deadline = time.monotonic() + 30
                while True:
                    actions = (await c.get("/api/v1/actions")).json()["actions"]
                    if any(a["name"] == "rerun_build" for a in actions):
                        break
                    assert time.monotonic() < deadline, actions
                    await asyncio.sleep(0.1)
            shown = await asyncio.to_thread(_cli, "actions", "--config", str(cfg), cwd=tmp_path)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert {a["runbook"] for a in actions} == {"RB-01"}
    assert {a["rule"] for a in actions} == {"pricing-pack-build-slow"}
    # The README's sample is this output: same header, same rows but for the time and
    # the run id (columns are as wide as their widest entry).
    [sample] = _blocks(_section("Try it"), "text")[:1]
    shown_lines, sample_lines = shown.stdout.splitlines(), sample.splitlines()
    assert shown_lines[0].split() == sample_lines[0].split()
    rows = [x.split()[3:] for x in shown_lines[1:]]
    assert all(x.split()[3:] in rows for x in sample_lines[1:]), shown.stdout


def test_the_replay_samples_are_what_replay_prints(tmp_path: Path) -> None:
    section = _section("Try it")
    samples = _blocks(section, "text")
    no_match = next(s for s in samples if "did not match" in s)
    payload = _try_it_payload()
    del payload["alerts"][0]["labels"]["service"]
    r = _cli("replay", "-", data=json.dumps(payload), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:4] == no_match.splitlines()
    timeline = samples[-1].splitlines()
    r = _cli("replay", "remediator/examples/PricingPackBuildSlow-firing.json", cwd=ROOT)
    # The whole sample up to its "...", as replay prints it (dates are the day it runs).
    shown = [x for x in timeline if x.strip() != "..."]
    assert [DATE.sub("D", x) for x in r.stdout.splitlines()[: len(shown)]] == [
        DATE.sub("D", x) for x in shown
    ]
    assert len(shown) > 20
