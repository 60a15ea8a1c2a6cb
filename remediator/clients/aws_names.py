"""Syntax of every AWS name or value a runbook passes (identifiers, CIDRs, keys).

Checked before any request leaves the process: a label value that is not a valid RDS
identifier, WAF name, bucket or key is InputRejected, never sent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from remediator.errors import InputRejected

# RDS: a letter, then letters/digits/single hyphens, no trailing hyphen, 1-63 chars.
_RDS_ID = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|-(?=[A-Za-z0-9]))*", re.ASCII)
_INSTANCE_CLASS = re.compile(r"db(?:\.[a-z0-9]+){1,4}", re.ASCII)
# re.ASCII: AWS's \w is ASCII-only, Python's would admit any Unicode letter.
_WAF_NAME = re.compile(r"[\w\-]{1,128}", re.ASCII)
_WAF_ID = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", re.ASCII)
_WAF_SCOPES = frozenset({"REGIONAL", "CLOUDFRONT"})
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", re.ASCII)
_IPV4_LIKE = re.compile(r"\d+\.\d+\.\d+\.\d+", re.ASCII)
_BUCKET_BAD_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_BAD_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_KEY_MAX_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InputRejected(field, f"expected a string, got {type(value).__name__}")
    return value


def check_rds_identifier(field: str, value: object) -> str:
    text = _text(field, value)
    if not 1 <= len(text) <= 63 or not _RDS_ID.fullmatch(text):
        raise InputRejected(
            field,
            "not an RDS identifier (letter first, then letters, digits and single "
            "hyphens, no trailing hyphen, at most 63 characters)",
        )
    return text


def check_instance_class(field: str, value: object) -> str:
    text = _text(field, value)
    if len(text) > 64 or not _INSTANCE_CLASS.fullmatch(text):
        raise InputRejected(field, "not an RDS instance class such as db.r6g.xlarge")
    return text


def check_waf_name(field: str, value: object) -> str:
    text = _text(field, value)
    if not _WAF_NAME.fullmatch(text):
        raise InputRejected(field, "a WAF name is 1-128 of A-Z a-z 0-9 _ -")
    return text


def check_waf_id(field: str, value: object) -> str:
    text = _text(field, value)
    if not _WAF_ID.fullmatch(text):
        raise InputRejected(field, "a WAF id is a lowercase UUID")
    return text


def check_waf_scope(field: str, value: object) -> str:
    text = _text(field, value)
    if text not in _WAF_SCOPES:
        raise InputRejected(field, "scope is REGIONAL or CLOUDFRONT")
    return text


def check_cidrs(
    field: str, values: Iterable[object]
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if isinstance(values, str | bytes):
        # A bare string would be iterated character by character.
        raise TypeError(f"{field} must be an iterable of CIDR strings, not a string")
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for value in values:
        text = _text(field, value)
        if "%" in text:
            # ipaddress accepts IPv6 zone ids ("fe80::1%eth0"); WAF has no such thing.
            raise InputRejected(field, f"{text[:64]!r} carries a zone id")
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise InputRejected(field, f"{text[:64]!r} is not a CIDR block: {exc}") from exc
        if net not in networks:
            networks.append(net)
    return networks


def check_bucket(field: str, value: object) -> str:
    text = _text(field, value)
    if (
        not _BUCKET.fullmatch(text)
        or ".." in text
        or _IPV4_LIKE.fullmatch(text)
        or text.startswith(_BUCKET_BAD_PREFIXES)
        or text.endswith(_BUCKET_BAD_SUFFIXES)
    ):
        raise InputRejected(field, "not a valid S3 bucket name")
    return text


def check_key(field: str, value: object) -> str:
    text = _text(field, value)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InputRejected(field, "not valid UTF-8") from exc
    if not 1 <= size <= _KEY_MAX_BYTES:
        raise InputRejected(field, f"an S3 key is 1-{_KEY_MAX_BYTES} bytes")
    if _CONTROL.search(text):
        raise InputRejected(field, "control characters are not allowed in a key")
    if ".." in re.split(r"[/\\]", text):
        raise InputRejected(field, "'..' path segments are not allowed in a key")
    return text


def _aware(field: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InputRejected(field, "expected a timezone-aware datetime")
    return value.astimezone(UTC)
