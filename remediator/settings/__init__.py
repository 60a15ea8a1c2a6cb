"""Configuration: the YAML file of the contract, parsed once into strict models.

One module per concern (base, auth, targets, pagers, limits, model, loading); every
name is importable from here, as callers always did.

Every unknown key or wrong type is a ConfigError naming the key and the file.
Secrets are ``SecretStr``: they print as ``**********`` in repr, logs and errors.
Nothing here reads ``os.environ`` at import time; ``load()`` takes the environment
as an argument so tests can pass their own.
"""

from __future__ import annotations

from remediator.settings.auth import MIN_TOKEN_LENGTH, AuthSettings
from remediator.settings.base import Strict, http_url, parse_duration, positive_duration
from remediator.settings.limits import (
    MIN_RETENTION,
    EngineSettings,
    LimitSettings,
    RetentionSettings,
)
from remediator.settings.loading import from_mapping, load
from remediator.settings.model import DEFAULT_STATE, LinkSettings, Settings, is_loopback
from remediator.settings.pagers import OpsgenieSettings, PagerDutySettings, PagerSettings
from remediator.settings.targets import (
    AwsSettings,
    GrafanaSettings,
    HttpSettings,
    KubernetesSettings,
    PrometheusSettings,
    ProviderSettings,
    TargetSettings,
)
from remediator.slack_settings import ApprovalSettings, SlackSettings

__all__ = [
    "DEFAULT_STATE",
    "MIN_RETENTION",
    "MIN_TOKEN_LENGTH",
    "ApprovalSettings",
    "AuthSettings",
    "AwsSettings",
    "EngineSettings",
    "GrafanaSettings",
    "HttpSettings",
    "KubernetesSettings",
    "LimitSettings",
    "LinkSettings",
    "OpsgenieSettings",
    "PagerDutySettings",
    "PagerSettings",
    "PrometheusSettings",
    "ProviderSettings",
    "RetentionSettings",
    "Settings",
    "SlackSettings",
    "Strict",
    "TargetSettings",
    "from_mapping",
    "http_url",
    "is_loopback",
    "load",
    "parse_duration",
    "positive_duration",
]
