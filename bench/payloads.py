"""Realistic Alertmanager v4 bodies, as text templates, for both load generators.

One alert and one payload are built with ``remediator.testing.make_alert`` /
``make_payload`` (the shape Alertmanager 0.25 sends), serialised once, and cut into
text pieces around a placeholder. The wrk Lua script and the Python generator then
only paste fingerprints in, so both send byte-for-byte the same shape, cheaply.

Fingerprints are 16 hex digits: ``NNNNNNNN`` (run nonce) ``SS`` (stream, e.g. a wrk
thread) ``IIIIII`` (counter), so they are distinct across streams and runs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from remediator.testing import make_alert, make_payload

PLACEHOLDER = "__FP__"
STARTS_AT = "2026-11-28T00:20:04.123Z"


@dataclass(frozen=True)
class Template:
    prefix: str  # payload text up to the first alert
    alert: str  # one alert, with PLACEHOLDER where the fingerprint goes
    suffix: str  # payload text after the last alert

    def body(self, fingerprints: list[str]) -> bytes:
        alerts = ",".join(self.alert.replace(PLACEHOLDER, fp) for fp in fingerprints)
        return (self.prefix + alerts + self.suffix).encode()


def labels(fingerprint: str) -> dict[str, str]:
    """The labels of the bench alert with this fingerprint (alertname aside)."""
    return {
        "severity": "page",
        "service": "dawsos",
        "env": "prod",
        "team": "sre",
        "job": "node-exporter",
        "instance": f"host-{fingerprint}",
    }


def template(alertname: str) -> Template:
    alert = make_alert(
        alertname,
        labels(PLACEHOLDER),
        annotations={
            "summary": f"{alertname} on host-{PLACEHOLDER}",
            "description": "Notifications per minute above 200 for 5 minutes; "
            "see the alert-storm runbook before acting by hand.",
            "runbook_url": "https://runbooks.example/dawsos#rb-03-alert-storm",
        },
        starts_at=STARTS_AT,
        generator_url="http://prometheus.example:9090/graph?g0.expr=rate%28notifications_total"
        "%5B5m%5D%29+%3E+200&g0.tab=1",
        fingerprint=PLACEHOLDER,
    )
    alert_text = orjson.dumps(alert).decode()
    payload_text = orjson.dumps(make_payload(alert)).decode()
    prefix, sep, suffix = payload_text.partition(alert_text)
    assert sep, "the alert must appear verbatim in its payload"
    return Template(prefix, alert_text, suffix)


def fingerprint(nonce: int, stream: int, i: int) -> str:
    return f"{nonce & 0xFFFFFFFF:08x}{stream & 0xFF:02x}{i & 0xFFFFFF:06x}"


def distinct_batches(nonce: int, stream: int, per_payload: int) -> Iterator[list[str]]:
    """Endless payloads of never-repeated fingerprints."""
    i = 0
    while True:
        yield [fingerprint(nonce, stream, i + k) for k in range(per_payload)]
        i += per_payload


def storm_plan(
    nonce: int, total: int, duplicate_share: float, per_payload: int, seed: int = 6
) -> tuple[list[list[str]], set[str]]:
    """``total`` occurrences of which ``duplicate_share`` repeat earlier ones, shuffled
    (so a repeat may arrive before, after or alongside its original), cut into payloads.

    Returns the payloads and the set of distinct fingerprints the journal must hold.
    """
    distinct = max(1, round(total * (1 - duplicate_share)))
    ids = list(range(distinct)) + [i % distinct for i in range(total - distinct)]
    random.Random(seed).shuffle(ids)
    fps = [fingerprint(nonce, 0xD5, i) for i in ids]
    batches = [fps[i : i + per_payload] for i in range(0, len(fps), per_payload)]
    return batches, set(fps)


def lua_header(tmpl: Template, *, per_payload: int, nonce: int, dupset: int) -> str:
    """Lua globals for bench/wrk/alerts.lua (dupset 0: all distinct)."""

    def long_string(text: str) -> str:
        level = "=" * 4
        assert f"]{level}]" not in text
        return f"[{level}[{text}]{level}]"

    return (
        f"PREFIX = {long_string(tmpl.prefix)}\n"
        f"ALERT = {long_string(tmpl.alert)}\n"
        f"SUFFIX = {long_string(tmpl.suffix)}\n"
        f"PLACEHOLDER = {long_string(PLACEHOLDER)}\n"
        f"NALERTS = {per_payload}\n"
        f"NONCE = {nonce & 0xFFFFFFFF}\n"
        f"DUPSET = {dupset}\n"
    )
