"""Where an operator command finds the daemon's state (README: Command line).

In order: ``--url`` (the daemon's operator API, with ``--token-file``), ``--config``,
``$REMEDIATOR_CONFIG``, and last the zero-config daemon's ``./remediator-state.db``
when it exists. Nothing here ever creates a store: an operator command that opened a
new empty one would answer "no actions recorded" about the wrong place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from remediator import config_paths
from remediator import settings as settings_mod
from remediator.errors import ConfigError

DEFAULT_DB = "remediator-state.db"


class NoStateFound(ConfigError):
    """No config, no URL and no store here: refuse rather than guess (exit 2)."""


@dataclass(frozen=True, slots=True)
class ApiPlace:
    url: str
    token: str | None

    def describe(self) -> str:
        return f"the daemon at {self.url}"


@dataclass(frozen=True, slots=True)
class StorePlace:
    settings: settings_mod.Settings

    def describe(self) -> str:
        return describe_state(self.settings.state.get_secret_value())


Place = ApiPlace | StorePlace


def describe_state(url: str) -> str:
    """The store as an operator can recognise it, with no password."""
    path = config_paths.sqlite_path(url)
    if path is not None:
        return f"state store {Path(path).resolve()}"
    if url.startswith(config_paths.SQLITE):
        return "in-memory state store"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    # The schema tells two stores in one database apart.
    schema = parse_qs(parts.query).get("search_path")
    where = f"?search_path={schema[0]}" if schema else ""
    return f"state store postgresql://{host}{port}{parts.path}{where}"


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read token file: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"{path}: token file is empty")
    return token


def locate(
    *,
    config: str | None,
    url: str | None,
    token_file: str | None,
    env: Mapping[str, str],
    cwd: Path,
) -> Place:
    if url is not None:
        if config is not None:
            raise ConfigError("give --config or --url, not both")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--url {url}: expected http:// or https://")
        return ApiPlace(url.rstrip("/"), _read_token(token_file) if token_file else None)
    if token_file is not None:
        raise ConfigError("--token-file goes with --url")
    path = config or env.get("REMEDIATOR_CONFIG") or None
    if path is not None:
        settings = settings_mod.load(path, env=env)
    elif (cwd / DEFAULT_DB).exists():
        settings = settings_mod.load(None, env={})
        settings = config_paths.anchored(settings, cwd)
    else:
        raise NoStateFound(
            "no state to read: give --config FILE (or set REMEDIATOR_CONFIG), or "
            "--url URL --token-file FILE for a running daemon; "
            f"there is no ./{DEFAULT_DB} in {cwd}"
        )
    db = config_paths.sqlite_path(settings.state.get_secret_value())
    if db is not None and not Path(db).exists():
        # Opening it would create an empty store and report on it.
        raise ConfigError(
            f"state store {db} does not exist (from {settings.source or 'the defaults'}); "
            "is this the config the daemon runs with?"
        )
    return StorePlace(settings)
