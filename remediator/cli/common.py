"""What every command shares: the settings, from --config or $REMEDIATOR_CONFIG."""

from __future__ import annotations

import argparse

from remediator import settings as settings_mod


def load_settings(args: argparse.Namespace) -> settings_mod.Settings:
    return settings_mod.load(getattr(args, "config", None))
