"""The operator commands a page or a listing prints, written so they can be pasted.

A daemon started with a config file prints ``--config /absolute/path``: the command
then finds the daemon's own state from any directory. One started without a config
has only its loopback API to offer (it listens on loopback, where the operator
routes answer without tokens), so it prints ``--url``.
"""

from __future__ import annotations

import os
import shlex

from remediator.settings import Settings


def where_flags(settings: Settings) -> str:
    # A loaded file's source is absolute (config_paths.anchored); settings built from
    # a mapping (tests, embedding) name no file.
    if settings.source and os.path.isabs(settings.source):
        return f"--config {_quote(settings.source)}"
    return f"--url http://{settings.listen}"


def command(settings: Settings | None, verb: str) -> str:
    """``command(settings, "approve 7")`` -> "remediator approve 7 --config /etc/r.yaml".

    Without settings (a bare step context: tests, replay) there is no daemon to point
    at, and the command is the bare one.
    """
    if settings is None:
        return f"remediator {verb}"
    return f"remediator {verb} {where_flags(settings)}"


def _quote(path: str) -> str:
    # Shell quoting only when needed: most paths paste as they are.
    return shlex.quote(path)
