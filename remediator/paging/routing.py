"""Severity routing: which configured pagers get which severity (DESIGN "Severity routing").

Without ``pagers.routes`` each severity goes to the configured pagers that take it by
default (P0 and P1: PagerDuty and Opsgenie; P2 and P3: Slack). A severity none of the
configured pagers takes by default goes to all of them instead, and the daemon warns
at start: a Slack-only or PagerDuty-only config still pages every severity somewhere.

With explicit ``pagers.routes`` nothing is widened: a route naming a pager that is
not configured, or a severity that reaches no configured pager, is a config error
naming the severity. With no pager configured at all the routing is empty, and the
daemon starts and warns.

This module decides and nothing else: it never builds a pager and never sends.
The daemon, ``doctor`` and ``backtest`` all ask it, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from remediator import logs
from remediator.errors import ConfigError
from remediator.paging.base import SEVERITIES, Severity

PagerName = Literal["pagerduty", "opsgenie", "slack"]

PAGER_NAMES: tuple[PagerName, ...] = get_args(PagerName)

# The severities each pager takes when ``pagers.routes`` is not set.
DEFAULT_SEVERITIES: dict[str, tuple[Severity, ...]] = {
    "pagerduty": ("P0", "P1"),
    "opsgenie": ("P0", "P1"),
    "slack": ("P2", "P3"),
}

log = logs.get("remediator.paging.routing")


@dataclass(frozen=True)
class Routing:
    """Severity -> the pagers that get it, in ``PAGER_NAMES`` order.

    ``widened``: severities that no configured pager takes by default and that go to
    every configured pager instead (never set with explicit routes).
    """

    by_severity: Mapping[Severity, tuple[str, ...]]
    widened: tuple[Severity, ...] = ()
    explicit: bool = False

    def severities_for(self, pager: str) -> tuple[Severity, ...]:
        return tuple(s for s in SEVERITIES if pager in self.by_severity.get(s, ()))

    @property
    def pagers(self) -> tuple[str, ...]:
        seen = {p for names in self.by_severity.values() for p in names}
        return tuple(p for p in PAGER_NAMES if p in seen)

    def as_dict(self) -> dict[str, list[str]]:
        """``{"P0": ["pagerduty"], ...}``: every severity, an empty list when unrouted."""
        return {s: list(self.by_severity.get(s, ())) for s in SEVERITIES}


def route(configured: Sequence[str], routes: Mapping[str, Sequence[str]] | None = None) -> Routing:
    """The routing for these configured pagers; ConfigError for bad explicit routes."""
    ordered = [p for p in PAGER_NAMES if p in configured]
    unknown = sorted(set(configured) - set(PAGER_NAMES))
    if unknown:
        raise ConfigError(f"pagers: unknown pager {', '.join(unknown)}")
    if routes is not None:
        return _explicit(ordered, routes)
    by_severity: dict[Severity, tuple[str, ...]] = {}
    widened: list[Severity] = []
    for severity in SEVERITIES:
        takers = tuple(p for p in ordered if severity in DEFAULT_SEVERITIES[p])
        if not takers and ordered:
            takers = tuple(ordered)
            widened.append(severity)
        by_severity[severity] = takers
    return Routing(by_severity, tuple(widened))


def _explicit(configured: Sequence[str], routes: Mapping[str, Sequence[str]]) -> Routing:
    by_severity: dict[Severity, tuple[str, ...]] = {}
    for key, names in routes.items():
        if key not in SEVERITIES:
            raise ConfigError(
                f"pagers.routes.{key}: unknown severity (one of {', '.join(SEVERITIES)})"
            )
        for name in names:
            if name not in PAGER_NAMES:
                raise ConfigError(
                    f"pagers.routes.{key}: unknown pager {name!r} (one of {', '.join(PAGER_NAMES)})"
                )
            if name not in configured:
                raise ConfigError(
                    f"pagers.routes.{key}: routes {key} to {name}, which is not configured"
                    f" (pagers.{name} is not set)"
                )
    for severity in SEVERITIES:
        names = tuple(p for p in PAGER_NAMES if p in routes.get(severity, ()))
        if not names:
            raise ConfigError(
                f"pagers.routes: {severity} reaches no configured pager; route it to one of"
                f" {', '.join(configured) or '(no pager is configured)'}"
            )
        by_severity[severity] = names
    return Routing(by_severity, explicit=True)


def configured_pagers(pagers: Any) -> list[str]:
    """Names of the pagers a ``PagerSettings`` configures (a section that is set)."""
    return [name for name in PAGER_NAMES if getattr(pagers, name, None) is not None]


def for_settings(pagers: Any) -> Routing:
    """The routing of a ``PagerSettings`` (``settings.pagers``)."""
    routes = getattr(pagers, "routes", None)
    return route(configured_pagers(pagers), routes)


def warn_at_start(routing: Routing, configured: Sequence[str]) -> None:
    """The start-up warnings: no pager at all, or severities sent to every pager."""
    if not configured:
        log.warning(
            "no_pager_configured",
            detail="no page reaches a human; set pagers.pagerduty, pagers.opsgenie or pagers.slack",
        )
        return
    for severity in routing.widened:
        log.warning(
            "severity_sent_to_every_pager",
            severity=severity,
            pagers=list(configured),
            detail=f"no configured pager takes {severity} by default; set pagers.routes to choose",
        )


def severity_routes(configured: list[str]) -> dict[str, tuple[Severity, ...]]:
    """Which severities each configured pager gets, by default routing (no explicit
    routes), with the start-up warnings. Kept for callers of the old daemon helper."""
    routing = route(configured)
    warn_at_start(routing, configured)
    return {name: routing.severities_for(name) for name in configured}
