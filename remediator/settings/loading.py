"""Reading the YAML file: ``${VAR}`` interpolation, then strict validation."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from remediator.errors import ConfigError
from remediator.settings.model import Settings

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
