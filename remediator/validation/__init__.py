"""Label hardening: every alert label a runbook uses passes through one of these.

Each function takes an untrusted value and returns it in canonical form, or raises
``InputRejected(field, reason)`` with a short reason that says what was expected.
Labels come from whoever can reach Alertmanager (or forge a webhook), so the checks
are allow-lists, not deny-lists: a value must look exactly like what it stands for.

These functions must never echo a whole value back (a 10 kB label would flood logs
and pages; reasons quote at most 64 characters), never do work proportional to a
value before its length is checked, and never accept "close enough" (no trimming,
no guessing).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime

from remediator.errors import ConfigError, InputRejected

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHOWN = 64
_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", re.ASCII)
_IP_CHARS = re.compile(r"[0-9A-Fa-f:./]+", re.ASCII)
_IP_MAX_LEN = 49  # longest IPv6 text with embedded IPv4, plus "/128"
_K8S_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?", re.ASCII)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_PACK_ID = re.compile(r"PP-(\d{4}-\d{2}-\d{2})", re.ASCII)
# Control, format (zero-width, bidi overrides), surrogates, line/paragraph separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


# Ranges never blocked: blocking them cuts off our own side or means nothing on the
# Internet. Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
# 2001:db8::/32) are deliberately *not* here: the runbooks and tests use them.
_REFUSED: tuple[tuple[IPNetwork, str], ...] = (
    (_net("0.0.0.0/8"), "unspecified ('this network')"),
    (_net("10.0.0.0/8"), "private"),
    (_net("100.64.0.0/10"), "shared (carrier-grade NAT)"),
    (_net("127.0.0.0/8"), "loopback"),
    (_net("169.254.0.0/16"), "link-local"),
    (_net("172.16.0.0/12"), "private"),
    (_net("192.0.0.0/24"), "reserved (IETF protocol assignments)"),
    (_net("192.168.0.0/16"), "private"),
    (_net("198.18.0.0/15"), "reserved (benchmarking)"),
    (_net("224.0.0.0/4"), "multicast"),
    (_net("240.0.0.0/4"), "reserved"),
    (_net("::/128"), "unspecified"),
    (_net("::1/128"), "loopback"),
    (_net("::ffff:0:0/96"), "IPv4-mapped (give the IPv4 form)"),
    (_net("64:ff9b:1::/48"), "private (local-use NAT64)"),
    (_net("100::/64"), "reserved (discard-only)"),
    (_net("fc00::/7"), "private (unique local)"),
    (_net("fe80::/10"), "link-local"),
    (_net("fec0::/10"), "site-local"),
    (_net("ff00::/8"), "multicast"),
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def shown(value: str) -> str:
    """``value`` quoted for a reason or log line, cut to 64 characters."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}... ({len(value)} chars)"


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InputRejected(field, f"expected a string, got {type(value).__name__}")
    return value


def is_provider_name(text: str) -> bool:
    """The syntax of a provider name (params list them; labels must name a configured one)."""
    return len(text) <= 64 and _PROVIDER.fullmatch(text) is not None


def provider(value: object, allowed: Collection[str], *, field: str = "provider") -> str:
    """A configured provider name, matched case-insensitively; returns the configured spelling."""
    text = _text(value, field)
    names = sorted(allowed)
    if is_provider_name(text):
        for name in names:
            if name.lower() == text.lower():
                return name
    raise InputRejected(field, f"{shown(text)} is not a configured provider (one of {names})")


def public_ip(
    value: object,
    *,
    allow_list: Sequence[str],
    max_prefix_v4: int = 32,
    max_prefix_v6: int = 128,
    field: str = "source_ip",
) -> IPNetwork:
    """A public address or CIDR that is safe to block; returns the canonical network.

    ``203.0.113.7`` -> ``IPv4Network('203.0.113.7/32')``. Refused: anything that is
    not plain IPv4/IPv6 text, CIDRs with host bits set, private / loopback / link-local
    / multicast / reserved / unspecified ranges (and anything overlapping them),
    networks broader than ``/max_prefix_v4`` (``/max_prefix_v6``), and anything that
    overlaps an ``allow_list`` CIDR (our offices, partners, health checkers).
    """
    if not 0 < max_prefix_v4 <= 32 or not 0 < max_prefix_v6 <= 128:
        raise ConfigError("max_prefix_v4 must be in 1..32 and max_prefix_v6 in 1..128")
    allowed = _allow_list(allow_list)
    text = _text(value, field)
    if len(text) > _IP_MAX_LEN or not _IP_CHARS.fullmatch(text):
        raise InputRejected(field, f"{shown(text)} is not an IP address or CIDR")
    net = _parse_network(text, field)

    if net.prefixlen == 0:
        raise InputRejected(field, f"{net} would match every address")
    for special, what in _REFUSED:
        if special.version == net.version and net.overlaps(special):
            raise InputRejected(field, f"{net} is in a {what} range ({special})")
    if isinstance(net, ipaddress.IPv6Network) and not net.subnet_of(_V6_GLOBAL_UNICAST):
        raise InputRejected(field, f"{net} is not global unicast (outside 2000::/3)")
    limit = max_prefix_v4 if net.version == 4 else max_prefix_v6
    if net.prefixlen < limit:
        raise InputRejected(field, f"{net} is broader than /{limit}, the configured limit")
    for entry in allowed:
        if entry.version == net.version and net.overlaps(entry):
            raise InputRejected(field, f"{net} overlaps allow-listed {entry}")
    return net


def _parse_network(text: str, field: str) -> IPNetwork:
    try:
        if "/" in text:
            return ipaddress.ip_network(text, strict=True)
        address = ipaddress.ip_address(text)
        return ipaddress.ip_network(f"{address}/{address.max_prefixlen}")
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InputRejected(field, f"{shown(text)} is not an IP address or CIDR") from None
    raise InputRejected(field, f"{shown(text)} has host bits set (the network is {loose})")


def _allow_list(entries: Sequence[str]) -> list[IPNetwork]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(f"allow_list: {entry!r} is not a CIDR") from None
    return networks


def k8s_name(value: object, *, field: str = "name") -> str:
    """An RFC 1123 label (Kubernetes object name): ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, <= 63."""
    text = _text(value, field)
    if len(text) > 63:
        raise InputRejected(field, f"{shown(text)} is longer than 63 characters")
    if not _K8S_NAME.fullmatch(text):
        raise InputRejected(
            field, f"{shown(text)} is not an RFC 1123 label (lowercase letters, digits, '-')"
        )
    return text


def pack_date(
    value: object, *, today: date | None = None, window_days: int = 7, field: str = "date"
) -> date:
    """An ISO date (YYYY-MM-DD) within ``window_days`` of today (UTC)."""
    text = _text(value, field)
    if len(text) != 10 or not _ISO_DATE.fullmatch(text):
        raise InputRejected(field, f"{shown(text)} is not an ISO date (YYYY-MM-DD)")
    return _within_window(text, today, window_days, field)


def pack_id(
    value: object, *, today: date | None = None, window_days: int = 7, field: str = "pack_id"
) -> str:
    """A pricing pack id ``PP-YYYY-MM-DD`` whose date is within ``window_days`` of today."""
    text = _text(value, field)
    match = _PACK_ID.fullmatch(text) if len(text) == 13 else None
    if match is None:
        raise InputRejected(field, f"{shown(text)} is not a pack id (PP-YYYY-MM-DD)")
    return pack_id_for(_within_window(match.group(1), today, window_days, field))


def pack_id_for(day: date) -> str:
    """The id DawsOS gives the pack of ``day``."""
    return f"PP-{day.isoformat()}"


def _within_window(text: str, today: date | None, window_days: int, field: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InputRejected(field, f"{shown(text)} is not a valid calendar date") from None
    ref = today or datetime.now(UTC).date()
    if abs((day - ref).days) > window_days:
        raise InputRejected(field, f"{day} is more than {window_days} days from {ref}")
    return day


def bounded_text(
    value: object, max_len: int = 256, *, field: str = "text", allow_empty: bool = False
) -> str:
    """Free text (summary, name): at most ``max_len`` chars, no control/format characters."""
    text = _text(value, field)
    if len(text) > max_len:
        raise InputRejected(field, f"{len(text)} characters; at most {max_len} allowed")
    if not text and not allow_empty:
        raise InputRejected(field, "must not be empty")
    for position, char in enumerate(text):
        if unicodedata.category(char) in _BAD_CATEGORIES:
            raise InputRejected(
                field, f"control or format character U+{ord(char):04X} at position {position}"
            )
    return text
