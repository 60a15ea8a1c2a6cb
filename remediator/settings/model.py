"""The whole configuration (``Settings``), made of the sections' models."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from remediator.settings.auth import AuthSettings
from remediator.settings.base import Strict
from remediator.settings.limits import EngineSettings, LimitSettings, RetentionSettings
from remediator.settings.pagers import PagerSettings
from remediator.settings.targets import TargetSettings
from remediator.slack_settings import ApprovalSettings

DEFAULT_STATE = "sqlite:///./remediator-state.db"


class LinkSettings(Strict):
    grafana: str | None = None
    runbooks: str | None = None


class Settings(Strict):
    listen: str = "127.0.0.1:9095"
    mode: Literal["dry-run", "live"] = "dry-run"
    rules: str = "rules/"
    runbooks: str | None = None  # YAML runbooks: a file or directory (README)
    state: SecretStr = SecretStr(DEFAULT_STATE)
    # Serving a non-loopback address with no tokens is refused unless this is set.
    allow_unauthenticated: bool = False
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    targets: TargetSettings = TargetSettings()
    pagers: PagerSettings = PagerSettings()
    links: LinkSettings = LinkSettings()
    approvals: ApprovalSettings = ApprovalSettings()
    engine: EngineSettings = EngineSettings()
    retention: RetentionSettings = RetentionSettings()
    source: str | None = Field(default=None, exclude=True)  # the file it came from

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:9095")
        return v

    @field_validator("state")
    @classmethod
    def _state(cls, v: SecretStr) -> SecretStr:
        url = v.get_secret_value()
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///PATH or postgresql://...")
        return v

    @model_validator(mode="after")
    def _no_open_door(self) -> Settings:
        if not self.auth.webhook_tokens and not self.allow_unauthenticated:
            if not is_loopback(self.host):
                raise ValueError(
                    f"listen address {self.listen} is not loopback and auth.webhook_tokens "
                    "is empty; set tokens or allow_unauthenticated: true"
                )
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
