"""Paths in a config file, anchored to the file's directory (README: Configuration).

``rules: rules/`` and ``state: sqlite:///state.db`` in ``/etc/remediator/config.yaml``
mean ``/etc/remediator/rules/`` and ``/etc/remediator/state.db``, whatever directory
the daemon or an operator command is started from. SQLite URLs follow SQLAlchemy:
three slashes and a relative path, or four slashes and an absolute one.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from remediator.settings import Settings

SQLITE = "sqlite:///"
MEMORY = ("", ":memory:")


def sqlite_path(url: str) -> str | None:
    """The file a sqlite state URL names (None for Postgres or an in-memory store)."""
    if not url.startswith(SQLITE):
        return None
    path = url[len(SQLITE) :]
    return None if path in MEMORY else path


def _anchor(path: str, base: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else (base / p).resolve())


def anchored(settings: Settings, base: Path) -> Settings:
    """``settings`` with its relative rules and runbooks paths and sqlite file resolved
    against ``base``, and ``source`` made absolute (pages print it in the commands they offer)."""
    state = settings.state.get_secret_value()
    path = sqlite_path(state)
    if path is not None:
        state = SQLITE + _anchor(path, base)
    source = _anchor(settings.source, Path.cwd()) if settings.source else None
    return settings.model_copy(
        update={
            "rules": _anchor(settings.rules, base),
            "runbooks": _anchor(settings.runbooks, base) if settings.runbooks else None,
            "state": SecretStr(state),
            "source": source,
        }
    )
