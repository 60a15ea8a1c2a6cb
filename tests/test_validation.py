"""Label hardening: canonical values in, clear InputRejected for everything else."""

from __future__ import annotations

import ipaddress
from datetime import date

import pytest

from remediator import validation
from remediator.errors import ConfigError, InputRejected

PROVIDERS = ("polygon", "fmp", "fred")
ALLOW = ("198.51.100.0/24", "2001:db8:1::/48")
TODAY = date(2025, 10, 21)
HUGE = "A" * 10_240


def rejected(excinfo: pytest.ExceptionInfo[InputRejected], field: str) -> str:
    assert excinfo.value.field == field
    assert len(excinfo.value.reason) < 200, "reasons stay short"
    return excinfo.value.reason


# ---------------------------------------------------------------- provider
@pytest.mark.parametrize(
    ("value", "canonical"),
    [("polygon", "polygon"), ("POLYGON", "polygon"), ("Fmp", "fmp"), ("fred", "fred")],
)
def test_provider_matches_case_insensitively_and_returns_configured_name(
    value: str, canonical: str
) -> None:
    assert validation.provider(value, PROVIDERS) == canonical


@pytest.mark.parametrize(
    "value",
    [
        "polygon' OR '1'='1",
        "polygon ",
        " polygon",
        "polygon\x00",
        "newsapi",
        "",
        "../x",
        "polygon;DROP TABLE alerts",
        "\uff50olygon",  # fullwidth p
        HUGE,
        42,
        None,
    ],
)
def test_provider_rejects_anything_not_configured(value: object) -> None:
    with pytest.raises(InputRejected) as caught:
        validation.provider(value, PROVIDERS)
    reason = rejected(caught, "provider")
    assert HUGE not in reason


def test_provider_reason_names_the_choices() -> None:
    with pytest.raises(InputRejected) as caught:
        validation.provider("bloomberg", PROVIDERS)
    assert "fmp" in caught.value.reason and "polygon" in caught.value.reason


# ---------------------------------------------------------------- public_ip
@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("203.0.113.7/32", "203.0.113.7/32"),
        ("192.0.2.1", "192.0.2.1/32"),
        ("8.8.8.8", "8.8.8.8/32"),
        ("2001:DB8:ABCD::1", "2001:db8:abcd::1/128"),
        ("2606:4700:4700:0000:0000:0000:0000:1111", "2606:4700:4700::1111/128"),
    ],
)
def test_public_ip_returns_the_canonical_network(value: str, canonical: str) -> None:
    net = validation.public_ip(value, allow_list=ALLOW)
    assert net == ipaddress.ip_network(canonical)
    assert str(net) == canonical


def test_public_ip_accepts_a_cidr_within_the_configured_prefix() -> None:
    net = validation.public_ip("203.0.113.0/24", allow_list=ALLOW, max_prefix_v4=24)
    assert str(net) == "203.0.113.0/24"
    net6 = validation.public_ip("2001:db8:2::/48", allow_list=ALLOW, max_prefix_v6=48)
    assert str(net6) == "2001:db8:2::/48"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("10.0.0.0/8", "private"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.10", "private"),
        ("100.64.0.1", "shared"),
        ("0.0.0.0/0", "every address"),
        ("0.0.0.0", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("::/0", "every address"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "IPv4-mapped"),
        ("::ffff:8.8.8.8", "IPv4-mapped"),
        ("4000::1", "global unicast"),
        ("203.0.113.0/8", "host bits"),
        ("203.0.0.0/8", "broader than /32"),
        ("8.0.0.0/7", "broader"),
        ("198.51.100.7", "allow-listed"),
        ("198.51.96.0/20", "broader"),
        ("2001:db8:1::5", "allow-listed"),
        ("fe80::1%eth0", "not an IP"),
        ("203.0.113.7:443", "not an IP"),
        ("203.0.113.7 ", "not an IP"),
        ("203.000.113.7", "not an IP"),
        ("1.2.3", "not an IP"),
        ("polygon' OR '1'='1", "not an IP"),
        ("../x", "not an IP"),
        ("", "not an IP"),
        (HUGE, "not an IP"),
    ],
)
def test_public_ip_refuses_unsafe_or_malformed_values(value: str, why: str) -> None:
    with pytest.raises(InputRejected) as caught:
        validation.public_ip(value, allow_list=ALLOW)
    reason = rejected(caught, "source_ip")
    assert why in reason
    assert HUGE not in reason


def test_public_ip_refuses_a_cidr_overlapping_the_allow_list_even_if_narrow_enough() -> None:
    with pytest.raises(InputRejected, match="allow-listed"):
        validation.public_ip("198.51.100.128/25", allow_list=ALLOW, max_prefix_v4=24)
    with pytest.raises(InputRejected, match="allow-listed"):
        validation.public_ip("198.51.0.0/16", allow_list=ALLOW, max_prefix_v4=16)


def test_public_ip_bad_allow_list_entry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="allow_list"):
        validation.public_ip("203.0.113.7", allow_list=["office"])


def test_public_ip_field_name_is_configurable() -> None:
    with pytest.raises(InputRejected) as caught:
        validation.public_ip("127.0.0.1", allow_list=(), field="client_ip")
    assert caught.value.field == "client_ip"


# ---------------------------------------------------------------- k8s_name
@pytest.mark.parametrize("value", ["scheduler", "build-pack-2025-10-21", "a", "a" * 63, "0x1"])
def test_k8s_name_accepts_rfc1123_labels(value: str) -> None:
    assert validation.k8s_name(value) == value


@pytest.mark.parametrize(
    "value",
    ["../x", "Scheduler", "-api", "api-", "api.prod", "a" * 64, "", "api prod", "api\n", HUGE],
)
def test_k8s_name_rejects_everything_else(value: str) -> None:
    with pytest.raises(InputRejected) as caught:
        validation.k8s_name(value, field="deployment")
    assert HUGE not in rejected(caught, "deployment")


# ---------------------------------------------------------------- pack dates
@pytest.mark.parametrize("value", ["2025-10-21", "2025-10-14", "2025-10-28"])
def test_pack_date_accepts_iso_dates_within_a_week(value: str) -> None:
    assert validation.pack_date(value, today=TODAY) == date.fromisoformat(value)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2025-10-13", "more than 7 days"),
        ("2025-10-29", "more than 7 days"),
        ("2025-02-30", "calendar date"),
        ("20251021", "ISO date"),
        ("2025-10-21T00:00:00", "ISO date"),
        ("2025-10-21'; --", "ISO date"),
        ("PP-2025-10-21", "ISO date"),
        # Fullwidth digits: \d would match them without re.ASCII.
        ("\uff12\uff10\uff12\uff15-10-21", "ISO date"),
        (HUGE, "ISO date"),
    ],
)
def test_pack_date_rejects_other_values(value: str, why: str) -> None:
    with pytest.raises(InputRejected) as caught:
        validation.pack_date(value, today=TODAY)
    assert why in rejected(caught, "date")


def test_pack_date_defaults_to_today_utc() -> None:
    with pytest.raises(InputRejected, match="more than 7 days"):
        validation.pack_date("2000-01-01")


def test_pack_id_round_trips_and_checks_the_window() -> None:
    assert validation.pack_id("PP-2025-10-20", today=TODAY) == "PP-2025-10-20"
    assert validation.pack_id_for(date(2025, 10, 21)) == "PP-2025-10-21"
    for bad in ["PP-2025-09-01", "pp-2025-10-20", "PP-2025-10-20 ", "2025-10-20"]:
        with pytest.raises(InputRejected):
            validation.pack_id(bad, today=TODAY)


# ---------------------------------------------------------------- bounded_text
def test_bounded_text_accepts_ordinary_unicode() -> None:
    text = "Pricing pack warming in progress — 503 on /execute (Zürich)"
    assert validation.bounded_text(text) == text


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (HUGE, "at most 256"),
        ("", "empty"),
        ("line1\nline2", "U+000A"),
        ("tab\there", "U+0009"),
        ("nul\x00", "U+0000"),
        ("esc\x1b[31m", "U+001B"),
        ("bidi\u202eevil", "U+202E"),
        ("zero\u200bwidth", "U+200B"),
        ("sep\u2028x", "U+2028"),
    ],
)
def test_bounded_text_rejects_long_or_control_text(value: str, why: str) -> None:
    with pytest.raises(InputRejected) as caught:
        validation.bounded_text(value, field="summary")
    reason = rejected(caught, "summary")
    assert why in reason
    assert HUGE not in reason


def test_bounded_text_limit_is_configurable() -> None:
    assert validation.bounded_text("x" * 1000, max_len=1000) == "x" * 1000
    with pytest.raises(InputRejected, match="at most 10"):
        validation.bounded_text("x" * 11, max_len=10)
    assert validation.bounded_text("", allow_empty=True) == ""


def test_shown_truncates_long_values() -> None:
    shown = validation.shown(HUGE)
    assert len(shown) < 100 and "10240 chars" in shown
    assert validation.shown("short") == "'short'"
