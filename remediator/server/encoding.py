"""What a webhook body is sent as: its ``Content-Encoding`` and its charset.

aiohttp's own decompression is off (server/app.py): it answers an encoding it cannot
decode with a bare text 400 and a body that is not what its encoding says with a
500, and it bounds the decompressed size only per chunk. Here:

- ``identity`` (or none), ``gzip``/``x-gzip`` and ``deflate`` (zlib, or raw deflate
  as some clients send it) are decoded; any other coding, or several stacked, is a
  415 that names the ones taken (RFC 9110 15.5.16), before the body is read.
- A body that is not valid in its coding is a 400 ``malformed_body``.
- The decompressed body is bounded by ``limits.max_body_bytes`` like a plain one
  (413): zlib never produces more than that plus one byte, so a gzip bomb costs at
  most that much memory.
- JSON is UTF-8 (RFC 8259 8.1): a ``charset`` parameter other than UTF-8 is a 415.

Nothing here raises anything but ``Refused``; every message is printable.
"""

from __future__ import annotations

import zlib

from remediator.server.responses import printable

SUPPORTED = ("identity", "gzip", "x-gzip", "deflate")
_UTF8 = ("utf-8", "utf8")


class Refused(Exception):
    """The body cannot be taken: answer ``status`` with ``error`` and ``detail``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def check_charset(charset: str | None) -> None:
    if charset is not None and charset.strip().strip('"').lower() not in _UTF8:
        raise Refused(
            415,
            "unsupported_media_type",
            f"charset {printable(charset)!r} is not taken: JSON is UTF-8",
        )


def coding_of(header: str | None) -> str | None:
    """The one content coding to undo, or None for identity; Refused(415) otherwise."""
    if not header:
        return None
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in SUPPORTED:
        raise Refused(
            415,
            "unsupported_content_encoding",
            f"Content-Encoding {printable(header)!r} is not taken; "
            f"send one of {', '.join(SUPPORTED)}",
        )
    return codings[0]


def decode(body: bytes, coding: str, limit: int) -> bytes:
    """The body with ``coding`` undone, at most ``limit`` bytes."""
    if coding == "deflate":
        # RFC 9110's deflate is the zlib format; raw deflate is told apart by the zlib
        # header's check bits (CM 8, and the first two bytes a multiple of 31).
        zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
        wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    out = bytearray()
    data = body
    while True:
        d = zlib.decompressobj(wbits)
        try:
            # max_length: never more than one byte past the limit, whatever the ratio.
            out += d.decompress(data, limit + 1 - len(out))
        except zlib.error:
            raise Refused(400, "malformed_body", f"the body is not valid {coding}") from None
        if len(out) > limit:
            raise Refused(413, "payload_too_large", f"decoded body exceeds {limit} bytes")
        if not d.eof:
            raise Refused(400, "malformed_body", f"the {coding} body is truncated")
        data = d.unused_data
        if not data:
            return bytes(out)
        if coding == "deflate":
            raise Refused(400, "malformed_body", "data after the end of the deflate stream")
        # gzip allows several members one after the other (RFC 1952 2.2).
