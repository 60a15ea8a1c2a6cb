"""Configuration: the YAML file of the contract, parsed once into strict models.

Every unknown key or wrong type is a ConfigError naming the key and the file.
Secrets are ``SecretStr``: they print as ``**********`` in repr, logs and errors.
Nothing here reads ``os.environ`` at import time; ``load()`` takes the environment
as an argument so tests can pass their own.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from remediator.errors import ConfigError
from remediator.slack_settings import ApprovalSettings, SlackSettings

DEFAULT_STATE = "sqlite:///./remediator-state.db"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_duration(value: object) -> float:
    """'30m' -> 1800.0; bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration like 30s, 5m, 1h, got {value!r}")


def positive_duration(value: object, name: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{name} must be positive")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


# A token short enough to guess or to have been typed as a placeholder ("secret",
# "changeme") is refused at start: these tokens guard mutations of production.
MIN_TOKEN_LENGTH = 16


def _token(value: Any, where: str) -> Any:
    """One configured token, stripped; refused when it cannot be a real secret.

    Surrounding whitespace is stripped rather than refused: it is what a token read
    from a file or a Secret with a trailing newline carries, and the bearer parser
    strips what a client sends the same way.
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        # Said here: pydantic's own message for the union type is unreadable.
        raise ValueError(f"{where} must be a string")
    token = value.strip()
    if not token:
        raise ValueError(f"{where} is only whitespace")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{where} is {len(token)} characters; tokens need at least {MIN_TOKEN_LENGTH}"
        )
    return token


class AuthSettings(_Strict):
    webhook_tokens: tuple[SecretStr, ...] = ()
    # Operator tokens may be named ("alice": token) so the audit trail can say who
    # approved; a bare list gets names operator-1, operator-2, ...
    operator_tokens: tuple[SecretStr, ...] | dict[str, SecretStr] = ()

    @field_validator("webhook_tokens", "operator_tokens", mode="before")
    @classmethod
    def _checked(cls, v: Any) -> Any:
        # "${UNSET_VAR:-}" yields "": an optional token that is not set means no token
        # (dropped, so it can never let an empty credential in); anything else must
        # look like a real secret. Messages name the entry, never the value.
        if isinstance(v, list | tuple):
            return tuple(_token(t, f"entry {i}") for i, t in enumerate(v) if t not in ("", None))
        if isinstance(v, dict):
            return {k: _token(t, f"token {k!r}") for k, t in v.items() if t not in ("", None)}
        return v

    @model_validator(mode="after")
    def _separate(self) -> AuthSettings:
        # A token in both lists would make every Alertmanager peer (and whoever can
        # read its Secret) an operator: the separation would exist only on paper.
        webhook = {t.get_secret_value() for t in self.webhook_tokens}
        shared = [
            name
            for name, t in self.named_operator_tokens().items()
            if t.get_secret_value() in webhook
        ]
        if shared:
            raise ValueError(
                f"auth.operator_tokens {', '.join(shared)}: the same token is also in "
                "auth.webhook_tokens; operator and webhook tokens must differ"
            )
        return self

    def named_operator_tokens(self) -> dict[str, SecretStr]:
        if isinstance(self.operator_tokens, dict):
            return dict(self.operator_tokens)
        return {f"operator-{i + 1}": t for i, t in enumerate(self.operator_tokens)}


class LimitSettings(_Strict):
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    workers: int = Field(default=8, gt=0, le=256)
    max_alerts_per_payload: int = Field(default=5000, gt=0)
    # UTF-8 bytes of any one label or annotation name or value (alerts and the group's
    # labels), and labels (or annotations) per set: every byte is stored in the
    # journal and the audit trail, so what one sender can make it keep is bounded.
    max_label_bytes: int = Field(default=4096, gt=0)
    max_labels: int = Field(default=64, gt=0)
    # A client gets this long to send a request's headers (from connecting, or from
    # the previous answer on a kept-alive connection) and, separately, its body; an
    # idle kept-alive connection is closed after it too. Bounds slow clients.
    read_timeout: float = 10.0

    @field_validator("read_timeout", mode="before")
    @classmethod
    def _read_timeout(cls, v: Any) -> float:
        return positive_duration(v, "read_timeout")


class KubernetesSettings(_Strict):
    mode: Literal["off", "in-cluster", "kubeconfig"] = "off"
    namespace: str = "prod"
    kubeconfig: str | None = None
    host: str | None = None  # direct API URL (tests, kubectl proxy)

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml11_off(cls, v: Any) -> Any:
        # YAML 1.1: a bare `off` is parsed as False by PyYAML.
        return "off" if v is False else v


class AwsSettings(_Strict):
    region: str = "us-east-1"
    endpoint_url: str | None = None


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return v


class ProviderSettings(_Strict):
    """A provider's check with its credentials: ``{url, headers, params}`` (API keys)."""

    url: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    params: dict[str, SecretStr] = Field(default_factory=dict)

    _url = field_validator("url")(_http_url)


class HttpSettings(_Strict):
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


class PrometheusSettings(_Strict):
    url: str
    # Before a mutation, ALERTS must show the alert firing; before an undo, not firing.
    corroborate: bool = True
    timeout: float = 5.0

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> float:
        return positive_duration(v, "timeout")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


class GrafanaSettings(_Strict):
    """Grafana's alert state, the witness for alerts from Grafana Alerting."""

    url: str
    token: SecretStr  # a service account token that can read alert rules
    timeout: float = 5.0

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> float:
        return positive_duration(v, "timeout")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


class TargetSettings(_Strict):
    database: SecretStr | None = None
    redis: SecretStr | None = None
    kubernetes: KubernetesSettings = KubernetesSettings()
    aws: AwsSettings | None = None
    http: HttpSettings = HttpSettings()
    prometheus: PrometheusSettings | None = None
    grafana: GrafanaSettings | None = None


class PagerDutySettings(_Strict):
    routing_key: SecretStr
    url: str = "https://events.pagerduty.com/v2/enqueue"


class OpsgenieSettings(_Strict):
    api_key: SecretStr
    url: str = "https://api.opsgenie.com"


class PagerSettings(_Strict):
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


class LinkSettings(_Strict):
    grafana: str | None = None
    runbooks: str | None = None


class EngineSettings(_Strict):
    """Timings of the engine. Not in the original contract; all have safe defaults."""

    approval_ttl: float = 3600.0
    circuit_failures: int = Field(default=3, gt=0)
    circuit_reset: float = 600.0
    lease: float = 30.0
    poll_interval: float = 1.0
    page_retry_max: float = 300.0

    @field_validator(
        "approval_ttl", "circuit_reset", "lease", "poll_interval", "page_retry_max", mode="before"
    )
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


# Below these, pruning would undo what the store is for: occurrences keep Alertmanager's
# resends (repeat_interval, default 4h) from journaling an alert again, and finished
# runs are what cooldowns, hourly limits and blast radius count (the daemon also keeps
# runs for the longest such window of its loaded rules, whatever this says).
MIN_RETENTION = {"occurrences": (3600.0, "1h"), "runs": (86400.0, "1d")}


class RetentionSettings(_Strict):
    """How long finished rows stay in the state store (pruned on one replica at a time).

    ``occurrences``: done (and failed) occurrences, by when they were received.
    ``runs``: finished runs with their steps and approvals, and sent or failed pages.
    ``interval``: how often a replica tries a pruning pass.
    """

    occurrences: float = 7 * 86400.0
    runs: float = 90 * 86400.0
    interval: float = 60.0

    @field_validator("occurrences", "runs", "interval", mode="before")
    @classmethod
    def _duration(cls, v: Any, info: ValidationInfo) -> float:
        seconds = parse_duration(v)
        name = info.field_name or ""
        if name in MIN_RETENTION and seconds < MIN_RETENTION[name][0]:
            raise ValueError(f"must be at least {MIN_RETENTION[name][1]}")
        if seconds <= 0:
            raise ValueError("must be positive")
        return seconds


class Settings(_Strict):
    listen: str = "127.0.0.1:9095"
    mode: Literal["dry-run", "live"] = "dry-run"
    rules: str = "rules/"
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


def _interpolate(node: Any, env: Mapping[str, str], path: str, source: str) -> Any:
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{source}: {path}: environment variable {name} is not set")

        return _ENV_REF.sub(sub, node)
    if isinstance(node, dict):
        return {
            k: _interpolate(v, env, f"{path}.{k}" if path else str(k), source)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(v, env, f"{path}[{i}]", source) for i, v in enumerate(node)]
    return node


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def from_mapping(
    data: Mapping[str, Any], *, source: str = "<defaults>", env: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if env is None else env
    data = _interpolate(dict(data), env, "", source)
    try:
        return Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        # pydantic never includes SecretStr values in messages, but input echoes can;
        # _format_errors only uses location and message.
        raise ConfigError(_format_errors(exc, source)) from None


def load(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Load the config file (or REMEDIATOR_CONFIG, or the embedded defaults)."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get("REMEDIATOR_CONFIG") or None
    if path is None:
        return from_mapping({}, env=env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    settings = from_mapping(data, source=str(p), env=env)
    # Relative paths in the file (rules, a sqlite state) are relative to it,
    # so the daemon and an operator command started elsewhere find the same files.
    from remediator import config_paths

    return config_paths.anchored(settings, p.resolve().parent)
