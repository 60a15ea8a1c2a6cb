"""Bearer and basic auth, compared in constant time.

Webhook tokens and operator tokens are separate lists: a webhook token never opens
an operator route. Basic auth (Alertmanager's other ``http_config`` option) is
accepted for webhooks with any username and a webhook token as the password.

Credentials are handled as bytes from end to end: a client may send any bytes in
``Authorization`` (aiohttp hands them over as text with surrogate escapes), and
whatever it sends is a failed match, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from aiohttp import web
from pydantic import SecretStr


def presented_secret(request: web.Request) -> bytes | None:
    """The bearer token or basic-auth password exactly as sent, or None."""
    header = request.headers.get("Authorization", "")
    # surrogateescape undoes aiohttp's decoding: these are the bytes on the wire.
    raw = header.encode("utf-8", "surrogateescape")
    scheme, _, value = raw.partition(b" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == b"bearer" and value:
        return value
    if scheme == b"basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        _, sep, password = decoded.partition(b":")
        return password if sep else None
    return None


def match_token(presented: bytes | None, tokens: Mapping[str, SecretStr]) -> str | None:
    """The name of the matching token, or None. Checks every token (no early exit)."""
    if presented is None:
        return None
    found: str | None = None
    for name, token in tokens.items():
        if hmac.compare_digest(presented, token.get_secret_value().encode()):
            found = name
    return found
