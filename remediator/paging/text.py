"""The words of a page: one-line summary, readable body, links, size limits.

Every pager renders a ``PageContent`` through these functions, so a page reads the
same wherever it lands. Limits are counted in UTF-8 bytes, which is never less than
the character count, so a text that fits in bytes also fits a peer's character limit.
This module must never cut a text inside a character (or between a character and its
combining marks), and never silently drop items: a capped list says "... and N more".
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from urllib.parse import urlsplit

from remediator.paging.base import PageContent

ELLIPSIS = "…"

BANNERS = {
    "dry-run": "DRY-RUN: nothing was changed",
    "paused": "PAUSED by kill switch: nothing was changed",
}
_SUMMARY_PREFIX = {"dry-run": "[DRY-RUN] ", "paused": "[PAUSED] "}

SECTIONS = ("Done", "Skipped (why)", "Left for you", "Links")

# Per-item cap: one runaway step output must not crowd out the approve commands.
MAX_ITEM_BYTES = 1000
MAX_ITEMS = 50
BODY_LIMIT = 12_000
LINK_TEXT_BYTES = 200


def utf8_len(text: str) -> int:
    return len(text.encode())


def truncate(text: str, limit: int, *, ellipsis: str = ELLIPSIS) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else a prefix ending in ``ellipsis``."""
    if utf8_len(text) <= limit:
        return text
    room = limit - utf8_len(ellipsis)
    if room <= 0:
        return _prefix(ellipsis, limit)
    cut = _prefix(text, room)
    return cut + ellipsis


def _prefix(text: str, limit: int) -> str:
    # Decoding with errors="ignore" drops a trailing partial multi-byte sequence.
    cut = text.encode()[:limit].decode(errors="ignore")
    # Combining marks belong to the character before them: drop the whole cluster
    # rather than show a base letter without its accent.
    if len(cut) < len(text) and unicodedata.combining(text[len(cut)]):
        while cut and unicodedata.combining(cut[-1]):
            cut = cut[:-1]
        cut = cut[:-1]
    return cut


def one_line(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space."""
    return " ".join(text.split())


def summary(content: PageContent, limit: int = 1024) -> str:
    """The title on one line, marked when nothing was changed, within ``limit`` bytes."""
    return truncate(_SUMMARY_PREFIX.get(content.mode, "") + one_line(content.title), limit)


def banner(mode: str) -> str | None:
    return BANNERS.get(mode)


def fit_key(key: str, limit: int) -> str:
    """A dedup key within ``limit`` bytes that stays unique and stable when shortened."""
    if utf8_len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return _prefix(key, limit - len(digest) - 1) + "~" + digest


def links(content: PageContent) -> list[tuple[str, str]]:
    """(text, href) pairs worth showing: http(s) only; an empty generatorURL is dropped."""
    result = []
    for text, href in content.links:
        href = href.strip()
        if urlsplit(href).scheme in ("http", "https"):
            result.append((truncate(one_line(text), LINK_TEXT_BYTES) or href, href))
    return result


def cap_items(
    items: Sequence[str], max_items: int = MAX_ITEMS, max_item_bytes: int = MAX_ITEM_BYTES
) -> list[str]:
    """At most ``max_items`` entries, each at most ``max_item_bytes``; says what it cut."""
    shown = [truncate(one_line(item), max_item_bytes) for item in items[:max_items]]
    if len(items) > max_items:
        shown.append(f"... and {len(items) - max_items} more")
    return shown


def body(
    content: PageContent,
    *,
    limit: int = BODY_LIMIT,
    max_items: int = MAX_ITEMS,
    max_item_bytes: int = MAX_ITEM_BYTES,
) -> str:
    """The readable multi-line page, within ``limit`` UTF-8 bytes.

    When the page is too long, every section is shortened alike (fewer items each)
    rather than cutting the tail, so "Left for you" is never the part that is lost.
    """
    n = max_items
    while True:
        text = _render(content, n, max_item_bytes)
        if utf8_len(text) <= limit or n <= 1:
            return truncate(text, limit)
        n //= 2


def _render(content: PageContent, max_items: int, max_item_bytes: int) -> str:
    lines: list[str] = []
    if (b := banner(content.mode)) is not None:
        lines += [b, ""]
    lines.append(truncate(one_line(content.title), max_item_bytes))
    lines.append(
        f"Alert: {content.alertname} | Runbook: {content.runbook} | Rule: {content.rule}"
        f" | Severity: {content.severity} | Mode: {content.mode}"
    )
    if content.values:
        shown = ", ".join(f"{name}={value}" for name, value in content.values)
        lines.append(truncate(one_line(f"Values: {shown}"), max_item_bytes))
    link_lines = [f"{text}: {href}" for text, href in links(content)]
    sections = (content.done, content.skipped, content.left_for_human, link_lines)
    for title, items in zip(SECTIONS, sections, strict=True):
        lines += ["", title]
        capped = cap_items(items, max_items, max_item_bytes)
        lines += [f"- {item}" for item in capped] if capped else ["- (none)"]
    return "\n".join(lines)
