"""The pagers (``pagers``) and their severity routes."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from remediator.errors import ConfigError
from remediator.settings.base import Strict
from remediator.slack_settings import SlackSettings


class PagerDutySettings(Strict):
    routing_key: SecretStr
    url: str = "https://events.pagerduty.com/v2/enqueue"


class OpsgenieSettings(Strict):
    api_key: SecretStr
    url: str = "https://api.opsgenie.com"


class PagerSettings(Strict):
    pagerduty: PagerDutySettings | None = None
    slack: SlackSettings | None = None
    opsgenie: OpsgenieSettings | None = None
    # New incidents per pager in any rolling hour; past it they fold into one summary.
    max_pages_per_hour: int = Field(default=60, gt=0)
    # Severity -> pager names; checked against the configured pagers (paging/routing.py).
    routes: dict[str, tuple[str, ...]] | None = None

    @model_validator(mode="after")
    def _routes(self) -> PagerSettings:
        from remediator.paging import routing

        try:
            routing.for_settings(self)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self
