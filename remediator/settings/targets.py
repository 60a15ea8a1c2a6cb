"""The systems runbooks act on and read from (``targets``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from remediator.settings.base import Strict, http_url, positive_duration


class KubernetesSettings(Strict):
    mode: Literal["off", "in-cluster", "kubeconfig"] = "off"
    namespace: str = "prod"
    kubeconfig: str | None = None
    host: str | None = None  # direct API URL (tests, kubectl proxy)

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml11_off(cls, v: Any) -> Any:
        # YAML 1.1: a bare `off` is parsed as False by PyYAML.
        return "off" if v is False else v


class AwsSettings(Strict):
    region: str = "us-east-1"
    endpoint_url: str | None = None


class ProviderSettings(Strict):
    """A provider's check with its credentials: ``{url, headers, params}`` (API keys)."""

    url: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    params: dict[str, SecretStr] = Field(default_factory=dict)

    _url = field_validator("url")(http_url)


class HttpSettings(Strict):
    app_url: str | None = None
    app_token: SecretStr | None = None  # sent as a Bearer token to the freshness gate
    # A URL, or {url, headers, params} for providers that need an API key.
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)

    @field_validator("providers", mode="before")
    @classmethod
    def _bare_urls(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"url": u} if isinstance(u, str) else u for k, u in v.items()}
        return v

    @field_validator("app_token", mode="before")
    @classmethod
    def _optional_token(cls, v: Any) -> Any:
        # "${DAWSOS_JWT:-}" unset: no token, never an empty "Bearer ".
        return None if isinstance(v, str) and not v.strip() else v


class _Endpoint(Strict):
    """An HTTP API the daemon asks (Prometheus, Grafana): its URL and timeout."""

    url: str
    timeout: float = 5.0

    _url = field_validator("url")(http_url)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> float:
        return positive_duration(v, "timeout")


class PrometheusSettings(_Endpoint):
    # Before a mutation, ALERTS must show the alert firing; before an undo, not firing.
    corroborate: bool = True


class GrafanaSettings(_Endpoint):
    """Grafana's alert state, the witness for alerts from Grafana Alerting."""

    token: SecretStr  # a service account token that can read alert rules


class TargetSettings(Strict):
    database: SecretStr | None = None
    redis: SecretStr | None = None
    kubernetes: KubernetesSettings = KubernetesSettings()
    aws: AwsSettings | None = None
    http: HttpSettings = HttpSettings()
    prometheus: PrometheusSettings | None = None
    grafana: GrafanaSettings | None = None
