"""Names and values checked against Kubernetes' own rules before any request is built.

A label value taken from an alert can never shape a URL or a manifest: everything the
Kubernetes client sends passes these first (InputRejected otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from remediator.errors import InputRejected

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# Registry host[:port]/path[:tag][@digest]; no spaces, quotes or shell metacharacters.
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
_MAX_ARGS, _MAX_ARG_LEN = 64, 4096
MAX_SECRET_BYTES = 1024 * 1024  # the API server's own limit for a Secret
MAX_REPLICAS = 1000


# fullmatch, never match/$: "$" accepts a trailing newline. Length first, so a 10 kB
# value is refused without being scanned.


def check_str(field: str, value: object, max_len: int) -> str:
    if not isinstance(value, str):
        raise InputRejected(field, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InputRejected(field, f"longer than {max_len} characters")
    return value


def validate_dns_label(field: str, value: object) -> str:
    """RFC 1123 label: names of namespaces, Jobs, Deployments."""
    text = check_str(field, value, 63)
    if not _DNS_LABEL.fullmatch(text):
        raise InputRejected(field, "not a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?)")
    return text


def validate_dns_subdomain(field: str, value: object) -> str:
    """RFC 1123 subdomain: names of Secrets and Pods."""
    text = check_str(field, value, 253)
    if not _DNS_SUBDOMAIN.fullmatch(text):
        raise InputRejected(field, "not a DNS subdomain")
    return text


def _validate_label_key(field: str, key: str) -> None:
    prefix, sep, name = key.rpartition("/")
    if sep:
        validate_dns_subdomain(field, prefix)
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        raise InputRejected(field, f"invalid label key {key[:80]!r}")


def _validate_label_value(field: str, value: str) -> None:
    if len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
        raise InputRejected(field, f"invalid label value {value[:80]!r}")


def validate_labels(field: str, labels: Mapping[str, str]) -> dict[str, str]:
    if len(labels) > 32:
        raise InputRejected(field, "more than 32 labels")
    for key, value in labels.items():
        check_str(field, key, 317)
        check_str(field, value, 63)
        _validate_label_key(field, key)
        _validate_label_value(field, value)
    return dict(labels)


def validate_label_selector(field: str, selector: object) -> str:
    """Equality selectors only (``app=scheduler,tier!=batch``); that is all runbooks need."""
    text = check_str(field, selector, 1024)
    if not text:
        raise InputRejected(field, "empty selector would select every pod")
    for term in text.split(","):
        m = re.fullmatch(r"([^=!]+)(==|=|!=)([^=!]*)", term)
        if m is None:
            raise InputRejected(field, f"unsupported selector term {term[:80]!r}")
        _validate_label_key(field, m.group(1))
        _validate_label_value(field, m.group(3))
    return text


def validate_int(field: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InputRejected(field, f"expected an integer in [{low}, {high}]")
    return value


def validate_command(command: Sequence[str]) -> list[str]:
    if isinstance(command, str) or not 0 < len(command) <= _MAX_ARGS:
        raise InputRejected("command", f"expected a list of 1..{_MAX_ARGS} arguments")
    for arg in command:
        # No shell runs this argv, but NUL would be cut by the kernel and mislead readers.
        if "\x00" in check_str("command", arg, _MAX_ARG_LEN):
            raise InputRejected("command", "argument contains NUL")
    return list(command)
