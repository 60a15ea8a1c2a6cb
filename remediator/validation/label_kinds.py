"""The validators a YAML runbook may declare for a label (``labels: {name: kind}``).

They are the checks the built-in runbooks use, by name, so a label that reaches a
YAML runbook's SQL bind, Deployment name or Job argument has passed the same
allow-list as one reaching RB-01..RB-06. A label with no declared kind cannot be
used at all (``check-rules`` refuses the runbook).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date

from remediator import validation
from remediator.errors import InputRejected

LabelCheck = Callable[[object, str], str]

_INTEGER = re.compile(r"-?[0-9]{1,18}", re.ASCII)
_UUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}", re.ASCII)


def _provider(value: object, field: str) -> str:
    text = validation.bounded_text(value, 64, field=field)
    if not validation.is_provider_name(text):
        raise InputRejected(field, f"{validation.shown(text)} is not a provider name")
    return text


def _date(value: object, field: str) -> str:
    text = validation.bounded_text(value, 10, field=field)
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise InputRejected(field, f"{validation.shown(text)} is not an ISO date (YYYY-MM-DD)")


def _ip(value: object, field: str) -> str:
    """A single public address: never a private, loopback or reserved one, never a range."""
    net = validation.public_ip(value, allow_list=(), field=field)
    if net.num_addresses != 1:
        raise InputRejected(field, f"{net} is a range; a single address is expected")
    return str(net.network_address)


def _uuid(value: object, field: str) -> str:
    text = validation.bounded_text(value, 36, field=field)
    if not _UUID.fullmatch(text):
        raise InputRejected(field, f"{validation.shown(text)} is not a UUID")
    return str(uuid.UUID(text))


def _k8s_name(value: object, field: str) -> str:
    return validation.k8s_name(value, field=field)


def _integer(value: object, field: str) -> str:
    text = validation.bounded_text(value, 19, field=field)
    if not _INTEGER.fullmatch(text):
        raise InputRejected(field, f"{validation.shown(text)} is not an integer")
    return str(int(text))


KINDS: dict[str, LabelCheck] = {
    "provider": _provider,
    "date": _date,
    "ip": _ip,
    "uuid": _uuid,
    "k8s_name": _k8s_name,
    "integer": _integer,
}
