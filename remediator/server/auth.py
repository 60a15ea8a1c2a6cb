"""Bearer and basic auth, compared in constant time.

Webhook tokens and operator tokens are separate lists: a webhook token never opens
an operator route. Basic auth (Alertmanager's other ``http_config`` option) is
accepted for webhooks with any username and a webhook token as the password.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from aiohttp import web
from pydantic import SecretStr


def presented_secret(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value:
        return value.strip()
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep else None
    return None


def match_token(presented: str | None, tokens: Mapping[str, SecretStr]) -> str | None:
    """The name of the matching token, or None. Checks every token (no early exit)."""
    if presented is None:
        return None
    found: str | None = None
    given = presented.encode()
    for name, token in tokens.items():
        if hmac.compare_digest(given, token.get_secret_value().encode()):
            found = name
    return found
