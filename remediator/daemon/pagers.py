"""The configured pagers, and the secrets the logs must never show."""

from __future__ import annotations

from remediator.paging import routing
from remediator.paging.base import Pager
from remediator.settings import Settings
from remediator.state.store import StateStore

# Severity routing lives in paging/routing.py; these names stay for their callers.
DEFAULT_SEVERITIES = routing.DEFAULT_SEVERITIES
severity_routes = routing.severity_routes


def build_pagers(settings: Settings, store: StateStore | None = None) -> dict[str, Pager]:
    """The configured pagers. The Slack bot (``bot_token``) keeps its messages in the
    state store; without a ``store`` (tools that only render) the webhook is used."""
    from remediator.paging.opsgenie import OpsgeniePager
    from remediator.paging.pagerduty import PagerDutyPager
    from remediator.paging.slack import SlackPager

    pagers: dict[str, Pager] = {}
    p = settings.pagers
    configured = routing.configured_pagers(p)
    routed = routing.for_settings(p)
    routing.warn_at_start(routed, configured)
    routes = {name: routed.severities_for(name) for name in configured}
    if p.pagerduty is not None:
        pagers["pagerduty"] = PagerDutyPager(
            p.pagerduty.routing_key.get_secret_value(),
            p.pagerduty.url,
            severities=routes["pagerduty"],
        )
    if p.opsgenie is not None:
        pagers["opsgenie"] = OpsgeniePager(
            p.opsgenie.api_key.get_secret_value(), p.opsgenie.url, severities=routes["opsgenie"]
        )
    if p.slack is not None and p.slack.bot_token is not None and store is not None:
        from remediator.paging.slack_api import SlackWebApi
        from remediator.paging.slack_bot import SlackBotPager

        api = SlackWebApi(p.slack.bot_token.get_secret_value(), p.slack.api_url)
        # Buttons only where a click can be taken (approvals.slack): else a click
        # would be answered 404, and the message shows the CLI commands instead.
        pagers["slack"] = SlackBotPager(
            api,
            p.slack.channel or "",
            store,
            severities=routes["slack"],
            buttons=settings.approvals.slack is not None,
        )
    elif p.slack is not None and p.slack.webhook_url is not None:
        pagers["slack"] = SlackPager(
            p.slack.webhook_url.get_secret_value(), severities=routes["slack"]
        )
    return pagers


def secret_values(settings: Settings) -> list[str]:
    out = [t.get_secret_value() for t in settings.auth.webhook_tokens]
    out += [t.get_secret_value() for t in settings.auth.named_operator_tokens().values()]
    p = settings.pagers
    if p.pagerduty:
        out.append(p.pagerduty.routing_key.get_secret_value())
    if p.opsgenie:
        out.append(p.opsgenie.api_key.get_secret_value())
    if p.slack:
        out += [s.get_secret_value() for s in (p.slack.webhook_url, p.slack.bot_token) if s]
    if settings.approvals.slack:
        out.append(settings.approvals.slack.signing_secret.get_secret_value())
    if settings.targets.grafana is not None:
        out.append(settings.targets.grafana.token.get_secret_value())
    http = settings.targets.http
    out += [http.app_token.get_secret_value()] if http.app_token else []
    for provider in http.providers.values():
        out += [
            v.get_secret_value() for v in (*provider.headers.values(), *provider.params.values())
        ]
    from urllib.parse import urlsplit

    for dsn in (settings.state, settings.targets.database, settings.targets.redis):
        if dsn is not None:
            pw = urlsplit(dsn.get_secret_value()).password
            if pw:
                out.append(pw)
    return out
