"""Hostile input against a live daemon: fuzzing, malformed bodies, slow clients, label
injection, authentication probes, and secrets that must never come back out.

Most tests run ``remediator serve`` as a child process (the production path: the CLI's
aiohttp runner, its timeouts, its logging) with a Postgres state store; the label
injection test runs the daemon in-process so that it can be handed the real target
clients. Each test records its figures with ``_report.record("hostile", ...)``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from remediator.models import canonical_time
from remediator.runbook_api.context import Clients
from remediator.runbook_api.registry import load_entry_points
from remediator.testing import make_alert, make_payload, resolved
from tests.conftest import PG_DSN, free_port
from tests.fixtures.kube_api import FakeKubeAPI
from tests.helpers import running_daemon
from tests.reliability._faults_fixtures import PagerDutyFake, ServeProcess, eventually, soak
from tests.reliability._report import record
from tests.runbooks import _rb0103_fixtures as fx13
from tests.runbooks import _rb0406_fixtures as fx46

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "remediator" / "openapi.yaml"
RULES_DIR = ROOT / "rules"
WEBHOOK_TOKEN = "hostile-webhook-token-5f2c9a1e7d"
OPERATOR_TOKEN = "hostile-operator-token-8d41b7c3e2"
WEBHOOK = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def serve_config(state: str, rules: Path, **extra: Any) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{free_port()}",
        "state": state,
        "rules": str(rules),
        "auth": {"webhook_tokens": [WEBHOOK_TOKEN], "operator_tokens": {"ops": OPERATOR_TOKEN}},
        "engine": {"poll_interval": "0.2s"},
        **extra,
    }


@asynccontextmanager
async def serving(
    tmp_path: Path, config: dict[str, Any], env: dict[str, str] | None = None
) -> AsyncIterator[ServeProcess]:
    proc = ServeProcess(tmp_path, config, env)
    try:
        await proc.start()
        yield proc
    finally:
        code = proc.stop()
        # A clean SIGTERM exit is part of "never a crash".
        assert code == 0, f"remediator exited {code}:\n{proc.output()[-3000:]}"


def shipped_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    return rules


async def journal_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM occurrences"))
    finally:
        await conn.close()


def internal_errors(proc: ServeProcess) -> list[str]:
    """Log lines that show an unhandled error (never expected from any input)."""
    bad = []
    for line in proc.output().splitlines():
        if "Traceback" in line or "Error handling request" in line or '"occurrence_failed"' in line:
            bad.append(line[:300])
    return bad


# ----------------------------------------------------------- property-based fuzzing

_TEXT = st.text(max_size=12)  # any code point but surrogates, NUL included
_STAMPS = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda d: f"{d.year:04d}" + d.strftime("-%m-%dT%H:%M:%S.%fZ")
    ),
    st.sampled_from(
        [
            "2026-11-28T00:20:04.123456789Z",
            "2026-11-28T01:20:04+01:00",
            "2026-11-28 00:20:04z",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
            "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
            "2026-02-30T00:00:00Z",
            "2026-11-28T00:20:04.1234567891Z",
            "2026-11-28T24:00:00Z",
            "now",
            "",
        ]
    ),
    _TEXT,
)
_FINGERPRINTS = st.one_of(st.text("0123456789abcdef", min_size=1, max_size=3), _TEXT)
_LABELS = st.dictionaries(st.text(min_size=0, max_size=8), _TEXT, max_size=4).map(
    lambda d: {"alertname": "FuzzAlert", **d}
)
_ALERT = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved", "firing", "pending"]),
        "labels": _LABELS,
        "startsAt": _STAMPS,
        "fingerprint": _FINGERPRINTS,
    },
    optional={
        "annotations": st.dictionaries(_TEXT, _TEXT, max_size=3),
        "endsAt": _STAMPS,
        "generatorURL": _TEXT,
    },
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_PAYLOAD = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["4", "4", "4", "3", 4]),
        "status": st.sampled_from(["firing", "resolved", "firing", "x"]),
        "receiver": _TEXT,
        "groupKey": _TEXT,
        "alerts": st.lists(_ALERT, max_size=6),
    },
    optional={
        "truncatedAlerts": st.integers(min_value=-3, max_value=10**20),
        "groupLabels": st.dictionaries(_TEXT, _TEXT, max_size=3),
        "commonLabels": st.dictionaries(_TEXT, _JSON, max_size=3),
        "externalURL": _TEXT,
    },
)


# Valid payloads with awkward content: any Unicode (but NUL) in labels and annotations,
# long values, offsets, nanoseconds, repeats inside one payload and across examples.
_CLEAN = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40)
_VALID_STAMPS = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda d: f"{d.year:04d}" + d.strftime("-%m-%dT%H:%M:%S.%fZ")
    ),
    st.sampled_from(
        [
            "2026-11-28T00:20:04.123456789Z",
            "2026-11-28T01:20:04+01:00",
            "2026-11-28 00:20:04z",
            "0001-01-01T00:00:00Z",
        ]
    ),
)
_VALID_ALERT = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]),
        "labels": st.dictionaries(_CLEAN.filter(bool), _CLEAN, max_size=5).map(
            lambda d: {"alertname": "FuzzAlert", **d}
        ),
        "startsAt": _VALID_STAMPS,
        "fingerprint": st.text("0123456789abcdef", min_size=1, max_size=3),
    },
    optional={
        "annotations": st.dictionaries(_CLEAN, _CLEAN, max_size=3),
        "endsAt": _VALID_STAMPS,
        "generatorURL": _CLEAN,
        "extraField": _JSON,
    },
)
_VALID = st.fixed_dictionaries(
    {
        "version": st.just("4"),
        "status": st.sampled_from(["firing", "resolved"]),
        "receiver": _CLEAN,
        "groupKey": _CLEAN,
        "alerts": st.lists(_VALID_ALERT, max_size=8),
    },
    optional={
        "truncatedAlerts": st.integers(0, 10**6),
        "commonLabels": st.dictionaries(_CLEAN, _CLEAN),
    },
)


@st.composite
def _mutated(draw: st.DrawFn) -> Any:
    """A payload with one part replaced by arbitrary JSON, or removed."""
    payload = draw(_PAYLOAD)
    path: list[Any] = []
    node: Any = payload
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    if not path:
        return draw(_JSON)
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(_JSON)
    return payload


def _encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


BODIES = st.one_of(
    st.tuples(_VALID, st.booleans()).map(lambda t: _encode(*t)),
    st.tuples(_VALID, st.booleans()).map(lambda t: _encode(*t)),
    st.tuples(_PAYLOAD, st.booleans()).map(lambda t: _encode(*t)),
    st.tuples(_mutated(), st.booleans()).map(lambda t: _encode(*t)),
    st.binary(max_size=300),
    _PAYLOAD.map(lambda p: _encode(p, False)[: len(_encode(p, False)) // 2]),  # cut short
)
CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", ""]
)


def _expected_keys(body: bytes) -> dict[tuple[str, str, str], dict[str, str]] | None:
    """The occurrence keys (and labels) a 202 for this body must have journaled; None
    for a body no 202 may answer (not an alert list, or a key that is not text Postgres
    can hold: a NUL character or a number where a string belongs)."""
    try:
        alerts = json.loads(body)["alerts"]
        out: dict[tuple[str, str, str], dict[str, str]] = {}
        for a in alerts:
            key = (a["fingerprint"], canonical_time(a["startsAt"]), a["status"])
            if not all(isinstance(k, str) and "\x00" not in k for k in key):
                return None
            out.setdefault(key, a["labels"])
        return out
    except (ValueError, KeyError, TypeError):
        return None


async def test_fuzzed_webhook_never_errors_and_journals_all_or_nothing(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    """Hypothesis sends well-formed, mutated, truncated and random bodies over real HTTP
    to a daemon on Postgres. Every answer is 202 or a 4xx with a JSON error (never a
    5xx); a 202 has journaled every occurrence of the body with its labels, any other
    answer journaled nothing; the daemon never logs an unhandled error and exits
    cleanly."""
    await fuzz(tmp_path, pg_schema_dsn, examples=250)


async def test_fuzzed_webhook_soak(tmp_path: Path, pg_schema_dsn: str) -> None:
    await fuzz(tmp_path, pg_schema_dsn, examples=3000)


for _mark in soak(900):
    test_fuzzed_webhook_soak = _mark(test_fuzzed_webhook_soak)


async def fuzz(tmp_path: Path, pg_schema_dsn: str, *, examples: int) -> None:
    (tmp_path / "rules").mkdir()
    loop = asyncio.get_running_loop()
    statuses: dict[int, int] = {}

    def db(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    pool = await asyncpg.create_pool(pg_schema_dsn, min_size=1, max_size=2)

    async def count() -> int:
        return int(await pool.fetchval("SELECT count(*) FROM occurrences"))

    async def rows_for(keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], Any]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT fingerprint, starts_at, status, labels FROM occurrences"
                " WHERE (fingerprint, starts_at, status) IN"
                " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
            )
        return {
            (r["fingerprint"], r["starts_at"], r["status"]): json.loads(r["labels"]) for r in rows
        }

    async with serving(tmp_path, serve_config(pg_schema_dsn, tmp_path / "rules")) as proc:
        client = httpx.Client(base_url=proc.url, timeout=30, headers=WEBHOOK)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            # No shrinking: a failing body is small already, and shrinking against a live
            # daemon can outlast the test's timeout and hide the failure behind it.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        )
        @given(body=BODIES, content_type=CONTENT_TYPES)
        def post(body: bytes, content_type: str) -> None:
            expected = _expected_keys(body)
            before_rows = db(rows_for(list(expected))) if expected else {}
            before = db(count())
            r = client.post("/api/v1/alerts", content=body, headers={"Content-Type": content_type})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code in (202, 400, 413, 415, 422), (r.status_code, r.text, body[:300])
            assert r.headers["content-type"].startswith("application/json")
            answer = r.json()
            after = db(count())
            if r.status_code != 202:
                assert set(answer) == {"error", "detail"}
                assert after == before, "an error answer journaled something"
                return
            assert expected is not None
            stored = db(rows_for(list(expected)))
            assert set(stored) == set(expected), "a 202 left occurrences out of the journal"
            new = set(expected) - set(before_rows)
            assert after - before == answer["journaled"] == len(new)
            for key in new:
                assert stored[key] == expected[key]

        try:
            await asyncio.to_thread(post)
        finally:
            client.close()
            await pool.close()
        async with httpx.AsyncClient() as probe:
            assert (await probe.get(proc.url + "/healthz")).status_code == 200
        assert internal_errors(proc) == []
    assert statuses.get(202, 0) > 0 and sum(statuses.values()) >= examples
    record(
        "hostile",
        name="fuzzed webhook bodies (hypothesis)",
        tried=sum(statuses.values()),
        rejected=sum(n for s, n in statuses.items() if s != 202),
        server_errors=0,
        **{f"http_{s}": n for s, n in sorted(statuses.items())},
    )


# ------------------------------------------------------------------- schemathesis


async def test_openapi_description_holds_against_a_live_daemon(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    """schemathesis generates valid and invalid requests for every operation in the
    shipped remediator/openapi.yaml and sends them to a live daemon (with the shipped
    rules, and audit rows to list): no 5xx, and every status code, content type,
    header and body is the one the description promises."""
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_path(str(SPEC))
    calls: dict[str, int] = {}
    async with serving(tmp_path, serve_config(pg_schema_dsn, shipped_rules(tmp_path))) as proc:
        # Something for the audit trail: the shipped examples, planned in dry-run.
        async with httpx.AsyncClient(base_url=proc.url, headers=WEBHOOK) as c:
            for name in ("PricingPackBuildSlow-firing.json", "AlertStorm-firing.json"):
                body = (ROOT / "remediator" / "examples" / name).read_bytes()
                r = await c.post(
                    "/api/v1/alerts", content=body, headers={"Content-Type": "application/json"}
                )
                assert r.status_code == 202

            async def audited() -> bool:
                r = await c.get("/api/v1/actions", headers=OPERATOR)
                return len(r.json()["actions"]) > 5

            await eventually(audited, "audit rows")

        def run_all() -> None:
            session = requests.Session()
            for result in schema.get_all_operations():
                op = result.ok()
                headers = WEBHOOK if op.path == "/api/v1/alerts" else OPERATOR
                for mode in (
                    schemathesis.GenerationMode.POSITIVE,
                    schemathesis.GenerationMode.NEGATIVE,
                ):
                    label = f"{op.method.upper()} {op.path} {mode.value}"
                    examples = 40 if op.path == "/api/v1/alerts" else 12
                    try:
                        fuzz_operation(op, mode, label, headers, examples, session)()
                    except Unsatisfiable:
                        continue  # nothing invalid to generate (e.g. no parameters)
            session.close()

        def fuzz_operation(
            op: Any, mode: Any, label: str, headers: dict[str, str], examples: int, session: Any
        ) -> Any:
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                calls[label] = calls.get(label, 0) + 1
                case.call_and_validate(
                    base_url=proc.url,
                    session=session,
                    headers=dict(headers),
                    checks=checks,
                    timeout=30,
                )

            return call

        started = time.monotonic()
        await asyncio.to_thread(run_all)
        elapsed = time.monotonic() - started
        assert internal_errors(proc) == []
    operations = {k.rsplit(" ", 1)[0] for k in calls}
    assert len(operations) == 13, sorted(operations)
    record(
        "hostile",
        name="schemathesis (openapi.yaml)",
        tried=sum(calls.values()),
        rejected=0,
        server_errors=0,
        operations=len(operations),
        duration_s=round(elapsed, 1),
    )


# ------------------------------------------------------------ malformed bodies

NESTED_ARRAYS = b'{"version": "4", "receiver": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
NESTED_OBJECTS = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


def _alert_body(**over: Any) -> bytes:
    a = make_alert("HostileAlert", {"service": "dawsos"})
    a.update(over.pop("alert", {}))
    p = make_payload(a)
    p.update(over)
    return json.dumps(p).encode()


MALFORMED: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("100k nested arrays", NESTED_ARRAYS, {}, 400, "malformed_json"),
    ("100k nested objects", NESTED_OBJECTS, {}, 400, "malformed_json"),
    (
        "invalid UTF-8 in a label",
        _alert_body().replace(b'"dawsos"', b'"daw\xff\xfesos"'),
        {},
        400,
        "malformed_json",
    ),
    (
        "lone surrogate escape",
        _alert_body().replace(b'"dawsos"', b'"\\ud800"'),
        {},
        400,
        "malformed_json",
    ),
    ("UTF-16 body", _alert_body().decode().encode("utf-16"), {}, 400, "malformed_json"),
    (
        "NUL in alertname",
        _alert_body(alert={"labels": {"alertname": "A\u0000B"}}),
        {},
        422,
        "schema_violation",
    ),
    ("NUL in groupKey", _alert_body(groupKey="{}:\u0000"), {}, 422, "schema_violation"),
    (
        "NUL in generatorURL",
        _alert_body(alert={"generatorURL": "http://x/\u0000"}),
        {},
        422,
        "schema_violation",
    ),
    (
        "startsAt before year 1 in UTC",
        _alert_body(alert={"startsAt": "0001-01-01T00:00:00+01:00"}),
        {},
        422,
        "schema_violation",
    ),
    (
        "startsAt after year 9999 in UTC",
        _alert_body(alert={"startsAt": "9999-12-31T23:59:59-01:00"}),
        {},
        422,
        "schema_violation",
    ),
    (
        "1e999 as a number",
        _alert_body().replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": 1e999'),
        {},
        422,
        "schema_violation",
    ),
    ("not JSON at all", b"\x00\x01\x02 garbage", {}, 400, "malformed_json"),
    (
        "form body",
        b"a=1&b=2",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    (
        "over the body limit (declared)",
        b"{" + b" " * 1_100_000 + b"}",
        {},
        413,
        "payload_too_large",
    ),
]


async def test_malformed_bodies_get_a_clear_4xx_and_journal_nothing(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    """Deep nesting, invalid UTF-8, surrogates, NUL characters (which PostgreSQL text
    cannot hold), timestamps that overflow when converted to UTC, absurd numbers and
    oversize bodies (declared and chunked): each gets its 4xx and a JSON error, the
    journal stays empty, a well-formed alert sent in the same moment is still
    journaled, and the daemon logs no unhandled error."""
    config = serve_config(pg_schema_dsn, tmp_path / "rules")  # the default 1 MiB body limit
    (tmp_path / "rules").mkdir()
    got: list[tuple[str, int, str]] = []
    async with (
        serving(tmp_path, config) as proc,
        httpx.AsyncClient(base_url=proc.url, headers=WEBHOOK, timeout=30) as c,
    ):
        for name, body, headers, _, _ in MALFORMED:
            # A good alert races each bad one: one journal batch must not fail for both.
            good = make_payload(make_alert("GoodAlert", {"case": name}))
            bad_r, good_r = await asyncio.gather(
                c.post(
                    "/api/v1/alerts",
                    content=body,
                    headers={"Content-Type": "application/json", **headers},
                ),
                c.post("/api/v1/alerts", json=good),
            )
            assert good_r.status_code == 202, (name, good_r.text)
            got.append((name, bad_r.status_code, bad_r.json().get("error", bad_r.text)))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(140):
                yield b" " * 8192  # 1.1 MB, no Content-Length: the limit is found while reading

        r = await c.post(
            "/api/v1/alerts", content=chunks(), headers={"Content-Type": "application/json"}
        )
        got.append(("over the body limit (chunked)", r.status_code, r.json()["error"]))
        journal = await journal_count(pg_schema_dsn)
        assert internal_errors(proc) == []
    expected = [(n, code, err) for n, _, _, code, err in MALFORMED]
    expected.append(("over the body limit (chunked)", 413, "payload_too_large"))
    assert got == expected
    assert journal == len(MALFORMED)  # only the good alerts
    record("hostile", name="malformed bodies", tried=len(got), rejected=len(got), server_errors=0)


async def test_thousands_of_alerts_in_one_payload_up_to_the_limit(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    """5,000 alerts (limits.max_alerts_per_payload) in one payload are journaled in full;
    5,001 are refused with 413 and none of them is journaled."""
    (tmp_path / "rules").mkdir()
    config = serve_config(pg_schema_dsn, tmp_path / "rules")

    def payload(n: int, tag: str) -> bytes:
        alerts = [
            {
                "status": "firing",
                "labels": {"alertname": "Storm", "i": str(i)},
                "startsAt": "2026-11-28T00:00:00Z",
                "fingerprint": f"{tag}{i:07x}",
            }
            for i in range(n)
        ]
        return json.dumps(
            {
                "version": "4",
                "status": "firing",
                "receiver": "r",
                "groupKey": "{}:{}",
                "alerts": alerts,
            }
        ).encode()

    async with (
        serving(tmp_path, config) as proc,
        httpx.AsyncClient(base_url=proc.url, headers=WEBHOOK, timeout=60) as c,
    ):
        over = await c.post(
            "/api/v1/alerts",
            content=payload(5001, "b"),
            headers={"Content-Type": "application/json"},
        )
        after_over = await journal_count(pg_schema_dsn)
        full = await c.post(
            "/api/v1/alerts",
            content=payload(5000, "a"),
            headers={"Content-Type": "application/json"},
        )
        after_full = await journal_count(pg_schema_dsn)
    assert over.status_code == 413 and over.json()["error"] == "too_many_alerts"
    assert after_over == 0
    assert full.status_code == 202 and full.json()["journaled"] == 5000
    assert after_full == 5000
    record(
        "hostile", name="5,000 / 5,001 alerts in one payload", tried=2, rejected=1, server_errors=0
    )


# ------------------------------------------------------------------------ slowloris


class SlowClient:
    """A raw TCP client that sends its request a few bytes at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.closed_after: float | None = None  # seconds until the server closed on us
        self.sent = 0
        self.answer = b""

    async def run(self, data: bytes, *, head: int, step: float, budget: float) -> None:
        """Send ``head`` bytes at once, then one byte every ``step`` s, for ``budget`` s."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        started = time.monotonic()
        try:
            writer.write(data[:head])
            await writer.drain()
            self.sent = head
            while time.monotonic() - started < budget and self.sent < len(data):
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), step)
                except TimeoutError:
                    chunk = None
                if chunk is not None:
                    if chunk == b"":
                        self.closed_after = time.monotonic() - started
                        return
                    self.answer += chunk
                    continue
                writer.write(data[self.sent : self.sent + 1])
                await writer.drain()
                self.sent += 1
        except (ConnectionResetError, BrokenPipeError):
            self.closed_after = time.monotonic() - started
        finally:
            writer.close()


async def test_slow_clients_are_cut_off_and_do_not_block_others(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    """Slowloris: 20 clients trickle their request headers and 20 their body, one byte
    every 0.2 s. With limits.read_timeout 1s the server closes every one of them within
    a few seconds (the header ones without an answer, the body ones after a 408), long
    before they would finish; meanwhile an ordinary webhook is answered at once."""
    (tmp_path / "rules").mkdir()
    config = serve_config(pg_schema_dsn, tmp_path / "rules", limits={"read_timeout": "1s"})
    body = json.dumps(make_payload(make_alert("SlowAlert"))).encode()
    head = (
        f"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WEBHOOK_TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    bound = 6.0  # read_timeout + lingering + slack; the clients would need > 60 s
    async with serving(tmp_path, config) as proc:
        port = urlsplit(proc.url).port
        assert port is not None
        header_clients = [SlowClient(port) for _ in range(20)]
        body_clients = [SlowClient(port) for _ in range(20)]
        tasks = [
            asyncio.create_task(s.run(head + body, head=10, step=0.2, budget=20))
            for s in header_clients
        ]
        tasks += [
            asyncio.create_task(s.run(head + body, head=len(head) + 5, step=0.2, budget=20))
            for s in body_clients
        ]
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=proc.url, headers=WEBHOOK, timeout=5) as c:
            ok = await c.post("/api/v1/alerts", json=make_payload(make_alert("FastAlert")))
        await asyncio.gather(*tasks)
        assert internal_errors(proc) == []
    assert ok.status_code == 202
    for s in header_clients + body_clients:
        assert s.closed_after is not None and s.closed_after < bound, (s.closed_after, s.sent)
        assert s.sent < len(head + body)
    for s in header_clients:
        assert s.answer == b""  # never got as far as a request
    for s in body_clients:
        assert s.answer.startswith(b"HTTP/1.1 408"), s.answer[:100]
        assert b'"request_timeout"' in s.answer
    record("hostile", name="slowloris (headers and body)", tried=40, rejected=40, server_errors=0)


# ----------------------------------------------------------------- label injection

SQL = ["polygon'; DROP TABLE alerts; --", "FMP' OR '1'='1", "x\\'; SELECT pg_sleep(10); --"]
SHELL = ["2026-11-28; rm -rf /", "$(reboot)", "`id`", "2026-11-28\n--force"]
K8S_NAMES = ["../../etc/passwd", "Polygon_Upper", "a" * 300, "fmp/../secrets"]
WAF = [
    "0.0.0.0/0",
    "10.0.0.0/8",
    "192.168.1.1",
    "::/0",
    "192.0.2.0/1",
    "192.0.2.1\n203.0.113.9",
    "192.0.2.1 OR 1=1",
]


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fx46.aws_environment(tmp_path_factory.mktemp("aws")), fx46.moto_endpoint() as url:
        yield url


async def test_label_injection_through_the_webhook_changes_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, moto_url: str
) -> None:
    """Hostile label values for SQL (RB-02, RB-04 provider), shell and Kubernetes names
    (RB-01 date, RB-02 provider) and WAF ranges (RB-06 source_ip) arrive through the
    webhook in one payload to a live daemon with real targets: no database row, cluster
    object or WAF address changes, no Job is created, every affected step fails with
    "rejected input", and nothing fails with an internal error."""
    waf = fx46.admin_client("wafv2", moto_url)
    name = fx46.unique("dawsos-blocked-ips")
    ip_set_id = waf.create_ip_set(
        Name=name, Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=["203.0.113.99/32"]
    )["Summary"]["Id"]
    rules = {
        "rules": [
            {
                "name": "rb01",
                "matchers": ['alertname="PricingPackNotReady"'],
                "runbook": "RB-01",
                "params": {"build_poll_seconds": 0.05, "build_wait_seconds": 1},
            },
            {
                "name": "rb02",
                "matchers": ['alertname="ProviderErrorRateHigh"'],
                "runbook": "RB-02",
                "params": {"cache_keys": ["{prefix}fundamentals:AAPL"]},
            },
            {"name": "rb04", "matchers": ['alertname="RightsExportViolation"'], "runbook": "RB-04"},
            {
                "name": "rb06",
                "matchers": ['alertname="SuspiciousRequestRate"'],
                "runbook": "RB-06",
                "params": {"waf_ip_set_name": name, "waf_ip_set_id": ip_set_id},
            },
        ]
    }
    rules_text = yaml.safe_dump(rules)
    alerts = (
        [make_alert("ProviderErrorRateHigh", {"provider": v}) for v in SQL + K8S_NAMES]
        + [make_alert("RightsExportViolation", {"provider": v}) for v in SQL]
        + [make_alert("PricingPackNotReady", {"date": v}) for v in SHELL + K8S_NAMES]
        + [make_alert("SuspiciousRequestRate", {"source_ip": v}) for v in WAF]
    )
    async with (
        fx13.dawsos_db(request.config) as (dsn, db),
        fx13.http_checks() as (checks, router),
        FakeKubeAPI() as fake,
        fx46.aws_client(moto_url) as aws,
        fx13.redis_keys(request.config) as (raw, prefix),
    ):
        await raw.set(prefix + "fundamentals:AAPL", b"{}", ex=600)
        (tmp_path / "rules.yaml").write_text(rules_text.replace("{prefix}", prefix))
        cache = fx13.cache_for(request.config)
        fake.add_deployment(fx13.NS, "scheduler", replicas=2)
        kube = fx13.kube_client(fake.url)
        fx13.providers_answer(router)
        fx13.gate_answers(router, 200)
        before = await fx13.snapshot(dsn)
        config = {
            "mode": "live",
            "state": f"sqlite:///{tmp_path}/state.db",
            "rules": str(tmp_path / "rules.yaml"),
            "engine": {"poll_interval": "0.1s"},
        }
        async with kube as k8s_client:
            clients = Clients(
                database=db,
                kubernetes=k8s_client,
                http=checks,
                aws=aws,
                cache=cache,
                settings=fx13.settings(),
            )
            async with running_daemon(config, registry=load_entry_points(), clients=clients) as d:
                router.route(url__startswith=d.url).pass_through()
                async with httpx.AsyncClient(base_url=d.url) as c:
                    # One at a time: hostile values all map to one "invalid" lock target,
                    # and a run that is merely lock_busy would not exercise its value.
                    for n, alert in enumerate(alerts, 1):
                        r = await c.post("/api/v1/alerts", json=make_payload(alert))
                        assert r.status_code == 202, r.text

                        async def fired(n: int = n) -> bool:
                            runs = await d.daemon.store.list_runs(100)
                            return len(runs) == n and all(x["state"] != "running" for x in runs)

                        await eventually(fired, f"the run for {alert['labels']}")
                    runs = await d.daemon.store.list_runs(100)
                    steps = {x["id"]: await d.daemon.store.steps_for_run(x["id"]) for x in runs}
        await cache.aclose()
        after = await fx13.snapshot(dsn)
    mutating = [x for x in fake.requests if x.method != "GET"]
    blocked = waf.get_ip_set(Name=name, Scope="REGIONAL", Id=ip_set_id)["IPSet"]["Addresses"]
    assert after == before
    assert mutating == []
    assert blocked == ["203.0.113.99/32"]
    assert [r["blocked_by"] for r in runs] == [None] * len(alerts)  # every value was tried
    rejected = 0
    for run in runs:
        by_name = {s["name"]: s for s in steps[run["id"]]}
        for s in by_name.values():
            assert "internal error" not in (s["reason"] or ""), s
        mutators = [s for s in by_name.values() if s["mutates"] and s["approval"] == "auto"]
        assert mutators, (run["runbook"], run["blocked_by"], run["alert"]["labels"], list(by_name))
        for s in mutators:
            assert s["outcome"] in ("failed", "skipped"), (
                run["alert"]["labels"],
                s["name"],
                s["outcome"],
            )
            rejected += s["outcome"] == "failed" and "rejected input" in (s["reason"] or "")
    assert rejected >= len(alerts)
    record(
        "hostile",
        name="label injection (SQL, shell, k8s names, WAF ranges)",
        tried=len(alerts),
        rejected=len(alerts),
        server_errors=0,
    )


# ------------------------------------------------------------------ authentication


async def test_missing_wrong_and_probing_tokens_get_401_and_are_counted(
    tmp_path: Path, pg_schema_dsn: str
) -> None:
    """No token, wrong tokens, tokens sharing a growing prefix with the real one (a
    timing probe), wrong schemes and basic auth with a wrong password all get 401 with a
    JSON error, on the webhook and on every operator route, and each is counted in
    remediator_auth_failures_total; a webhook token opens no operator route and an
    operator token does not open the webhook."""
    (tmp_path / "rules").mkdir()
    probes: list[dict[str, str]] = [{}]
    for token in (WEBHOOK_TOKEN, OPERATOR_TOKEN):
        probes += [{"Authorization": f"Bearer {token[:n]}"} for n in range(1, len(token), 3)]
        probes += [
            {"Authorization": f"Bearer {token[:-1]}x"},
            {"Authorization": f"Bearer {token}x"},
            {"Authorization": f"bearer  {token.upper()}"},
            {"Authorization": f"Token {token}"},
            {"Authorization": token},
            {"Authorization": "Basic " + base64.b64encode(f"u:{token[:-1]}".encode()).decode()},
            {"Authorization": "Basic !!notbase64!!"},
        ]
    operator_routes = [
        ("GET", "/api/v1/actions"),
        ("POST", "/api/v1/actions/1/approve"),
        ("POST", "/api/v1/actions/1/reject"),
        ("POST", "/api/v1/pause"),
        ("POST", "/api/v1/resume"),
        ("POST", "/-/reload"),
    ]
    hook = json.dumps(make_payload(make_alert("AuthAlert"))).encode()
    async with (
        serving(tmp_path, serve_config(pg_schema_dsn, tmp_path / "rules")) as proc,
        httpx.AsyncClient(base_url=proc.url) as c,
    ):
        refused = 0
        for headers in probes:
            if headers.get("Authorization", "").endswith(WEBHOOK_TOKEN):
                continue  # not a probe
            r = await c.post(
                "/api/v1/alerts",
                content=hook,
                headers={**headers, "Content-Type": "application/json"},
            )
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", headers
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            refused += 1
        op_refused = 0
        for headers in [
            *probes,
            WEBHOOK,
            {
                "Authorization": "Basic "
                + base64.b64encode(f"ops:{WEBHOOK_TOKEN}".encode()).decode()
            },
        ]:
            if headers.get("Authorization", "") == f"Bearer {OPERATOR_TOKEN}":
                continue
            for method, path in operator_routes:
                r = await c.request(method, path, headers=headers)
                assert r.status_code == 401 and r.json()["error"] == "unauthorized", (headers, path)
                op_refused += 1
        # the operator token opens the operator routes and not the webhook
        assert (await c.get("/api/v1/actions", headers=OPERATOR)).status_code == 200
        r = await c.post(
            "/api/v1/alerts", content=hook, headers={**OPERATOR, "Content-Type": "application/json"}
        )
        assert r.status_code == 401
        refused += 1
        assert (
            await c.post(
                "/api/v1/alerts",
                content=hook,
                headers={**WEBHOOK, "Content-Type": "application/json"},
            )
        ).status_code == 202
        metrics = (await c.get("/metrics")).text
        journal = await journal_count(pg_schema_dsn)
    assert f'remediator_auth_failures_total{{realm="webhook"}} {float(refused)}' in metrics
    assert f'remediator_auth_failures_total{{realm="operator"}} {float(op_refused)}' in metrics
    assert f'remediator_webhooks_received_total{{code="401"}} {float(refused)}' in metrics
    assert journal == 1  # only the authenticated delivery
    record(
        "hostile",
        name="authentication probes",
        tried=refused + op_refused + 1,
        rejected=refused + op_refused,
        server_errors=0,
    )


# ------------------------------------------------------------------------ secrets


@asynccontextmanager
async def password_role(password: str) -> AsyncIterator[str]:
    """A login role with a password (the server may trust loopback; the DSN still
    carries the password, which is what must never be printed)."""
    role = "hostile_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
        yield role
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await admin.execute(f"DROP OWNED BY {role} CASCADE")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


def with_user(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


async def test_no_secret_ever_appears_in_logs_or_api_output(
    request: pytest.FixtureRequest, tmp_path: Path, pg_schema_dsn: str
) -> None:
    """A full scenario on a daemon whose config holds every kind of secret: webhook and
    operator tokens, a PagerDuty routing key and a Slack webhook URL (both pointed at
    local fakes), and a password in the state store's and the target database's DSNs.
    Alerts fire and resolve through several runbooks, a page is delivered, requests
    are refused with wrong tokens, the operator API is used, the target database goes
    away and /readyz reports it. No secret appears in anything the daemon printed or
    answered: stdout, stderr, /api/v1/actions, /metrics, /readyz and error bodies."""
    secrets_ = {
        "webhook": "whk-" + uuid.uuid4().hex,
        "operator": "opr-" + uuid.uuid4().hex,
        "routing": "pdk-" + uuid.uuid4().hex,
        "slack": "slk-" + uuid.uuid4().hex,
        "password": "pw-" + uuid.uuid4().hex,
    }
    # PagerDuty first refuses a page quoting it back (routing key included: the
    # daemon logs the refusal), then fails once, then accepts.
    pd = PagerDutyFake(["400:echo", "500"])
    await pd.start()
    slack_hits: list[Any] = []

    from aiohttp import web

    async def slack(req: web.Request) -> web.Response:
        slack_hits.append(await req.text())
        return web.Response(text="ok")

    async def status(req: web.Request) -> web.Response:
        return web.json_response({"status": "major_outage"})

    app = web.Application()
    app.router.add_post("/services/{tail:.*}", slack)
    app.router.add_get("/status/{provider}", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    peer = f"http://127.0.0.1:{runner.addresses[0][1]}"
    slack_url = f"{peer}/services/T0/B0/{secrets_['slack']}"
    outputs: list[str] = []
    try:
        async with (
            password_role(secrets_["password"]) as role,
            fx13.dawsos_db(request.config) as (dawsos_dsn, _db),
            fx13.redis_keys(request.config) as (raw, prefix),
        ):
            await raw.set(prefix + "fundamentals:AAPL", b"{}", ex=600)
            rules_dir = shipped_rules(tmp_path)
            for f in rules_dir.glob("*.yaml"):  # the shipped rules, with this test's cache key
                f.write_text(
                    f.read_text().replace('"fundamentals:AAPL"', f'"{prefix}fundamentals:AAPL"')
                )
            config = {
                "listen": f"127.0.0.1:{free_port()}",
                "mode": "live",
                "state": with_user(pg_schema_dsn, role, "${STATE_PASSWORD}"),
                "rules": str(rules_dir),
                "auth": {
                    "webhook_tokens": ["${WEBHOOK_TOKEN}"],
                    "operator_tokens": {"ops": "${OPERATOR_TOKEN}"},
                },
                "engine": {"poll_interval": "0.1s", "page_retry_max": "0.2s"},
                "targets": {
                    "database": with_user(dawsos_dsn, role, secrets_["password"]),
                    "redis": fx13.shared(request.config).REDIS_URL,
                    "http": {
                        "providers": {p: f"{peer}/status/{p}" for p in ("polygon", "fmp", "fred")},
                        "app_url": f"http://127.0.0.1:{free_port()}",
                    },
                },
                "pagers": {
                    "pagerduty": {"routing_key": "${PD_KEY}", "url": pd.url},
                    "slack": {"webhook_url": "${SLACK_URL}"},
                },
            }
            env = {
                "STATE_PASSWORD": secrets_["password"],
                "WEBHOOK_TOKEN": secrets_["webhook"],
                "OPERATOR_TOKEN": secrets_["operator"],
                "PD_KEY": secrets_["routing"],
                "SLACK_URL": slack_url,
            }
            hook = {"Authorization": f"Bearer {secrets_['webhook']}"}
            op = {"Authorization": f"Bearer {secrets_['operator']}"}
            alerts = [
                make_alert("RightsExportViolation", {"provider": "FMP", "service": "dawsos"}),
                make_alert("ProviderErrorRateHigh", {"provider": "polygon", "service": "dawsos"}),
                make_alert("AlertStorm", {"severity": "critical", "service": "dawsos"}),
                make_alert("PricingPackNotReady", {"severity": "page", "service": "dawsos"}),
            ]
            proc = ServeProcess(tmp_path, config, env)
            try:
                await proc.start()
                async with httpx.AsyncClient(base_url=proc.url, timeout=30) as c:

                    async def show(r: httpx.Response) -> httpx.Response:
                        outputs.append(f"{r.status_code} {dict(r.headers)} {r.text}")
                        return r

                    await show(
                        await c.post("/api/v1/alerts", json=make_payload(*alerts), headers=hook)
                    )
                    await show(
                        await c.post(
                            "/api/v1/alerts",
                            json=make_payload(*alerts),
                            headers={"Authorization": f"Bearer {secrets_['webhook'][:-2]}"},
                        )
                    )
                    await show(await c.post("/api/v1/pause", headers=hook))
                    await show(
                        await c.post(
                            "/api/v1/alerts",
                            content=b"{",
                            headers={**hook, "Content-Type": "application/json"},
                        )
                    )

                    async def delivered() -> bool:
                        return len(pd.accepted()) >= 1 and len(slack_hits) >= 1

                    await eventually(delivered, "a page to PagerDuty and a notice to Slack")

                    async def planned() -> bool:
                        r = await c.get("/api/v1/actions?limit=1000", headers=op)
                        return len({a["run_id"] for a in r.json()["actions"]}) >= len(alerts)

                    await eventually(planned, "the runs' steps")
                    await show(
                        await c.post(
                            "/api/v1/alerts",
                            json=make_payload(*[resolved(a) for a in alerts]),
                            headers=hook,
                        )
                    )
                    for path in ("/api/v1/actions?limit=1000", "/api/v1/actions?limit=x"):
                        await show(await c.get(path, headers=op))
                    await show(await c.post("/api/v1/actions/999999/approve", headers=op))
                    await show(await c.post("/api/v1/pause", headers=op))
                    await show(await c.post("/api/v1/resume", headers=op))
                    await show(await c.post("/-/reload", headers=op))
                    # The target database goes away under the daemon.
                    admin = await asyncpg.connect(PG_DSN)
                    try:
                        await admin.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE usename = $1 AND datname = $2",
                            role,
                            urlsplit(dawsos_dsn).path.lstrip("/"),
                        )
                    finally:
                        await admin.close()
                    await show(
                        await c.post(
                            "/api/v1/alerts",
                            headers=hook,
                            json=make_payload(
                                make_alert(
                                    "RightsExportViolation",
                                    {"provider": "POLYGON", "service": "dawsos"},
                                )
                            ),
                        )
                    )
                    await asyncio.sleep(1.0)
                    for path in ("/metrics", "/readyz", "/healthz"):
                        await show(await c.get(path))
                    await show(await c.get("/api/v1/actions?limit=1000", headers=op))
            finally:
                proc.stop()
            outputs.append(proc.output())
    finally:
        await pd.stop()
        await runner.cleanup()
    everything = "\n".join(outputs)
    assert "run_started" in everything and "step_finished" in everything  # the logs are there
    assert '"page_failed"' in everything and "cannot process" in everything  # the echo was logged
    leaks = {name: value for name, value in secrets_.items() if value in everything}
    assert leaks == {}, {
        k: everything[max(0, everything.find(v) - 200) : everything.find(v) + 100]
        for k, v in leaks.items()
    }
    # the fakes did receive them: the test would see a leak
    assert any(secrets_["routing"] in json.dumps(b) for b in pd.accepted())
    record(
        "hostile",
        name="secrets in logs and API output",
        tried=len(secrets_),
        rejected=0,
        server_errors=0,
        output_bytes=len(everything),
    )
