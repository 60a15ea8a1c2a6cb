"""Configuration of Slack: the bot that posts pages with approval buttons
(``pagers.slack``) and who may decide approvals from Slack (``approvals.slack``).

Kept apart from ``settings`` (which imports these models) so that module stays
about the daemon as a whole. Same rules: unknown keys are errors naming the key,
secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

MIN_SECRET_LENGTH = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SlackSettings(_Strict):
    """An incoming webhook (post only), or a bot token: ``chat.postMessage`` into
    ``channel`` with approval buttons, updated in place (``chat.update``) as the run
    goes on. With both set, the bot posts. ``api_url`` is the Web API base (tests)."""

    webhook_url: SecretStr | None = None
    bot_token: SecretStr | None = None
    channel: str | None = None  # chat.postMessage needs one: an id (C0123ABC) or #name
    api_url: str = "https://slack.com/api"

    @model_validator(mode="after")
    def _how_to_post(self) -> SlackSettings:
        if self.webhook_url is None and self.bot_token is None:
            raise ValueError("set webhook_url or bot_token")
        if self.bot_token is not None and not (self.channel or "").strip():
            raise ValueError("channel is required with bot_token (chat.postMessage needs it)")
        return self

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")


_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,30}$")


class SlackApprovalSettings(_Strict):
    """Approvals from Slack buttons: requests are verified with ``signing_secret``;
    ``approvers`` maps a Slack user id to the operator name the audit trail shows."""

    signing_secret: SecretStr
    approvers: dict[str, str] = Field(default_factory=dict)

    @field_validator("signing_secret", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        if not isinstance(v, str) or len(v.strip()) < MIN_SECRET_LENGTH:
            # Slack's signing secrets are 32 hex characters; a short one is a placeholder.
            raise ValueError(f"must be a string of at least {MIN_SECRET_LENGTH} characters")
        return v.strip()

    @field_validator("approvers")
    @classmethod
    def _approvers(cls, v: dict[str, str]) -> dict[str, str]:
        for user, name in v.items():
            if not _SLACK_USER.match(user):
                raise ValueError(f"{user!r} is not a Slack user id (like U024BE7LH)")
            if not name.strip():
                raise ValueError(f"{user}: the operator name must not be empty")
        return {user: name.strip() for user, name in v.items()}


class ApprovalSettings(_Strict):
    slack: SlackApprovalSettings | None = None
