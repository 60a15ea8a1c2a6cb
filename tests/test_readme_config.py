"""The README's config examples are configs the daemon takes, and the pager `url`
overrides it documents are the keys the pagers send to."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator import settings as settings_mod
from remediator.daemon.pagers import build_pagers
from remediator.errors import ConfigError
from remediator.settings.model import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TOP_KEYS = set(Settings.model_fields) - {"source"}


def config_blocks() -> list[dict[str, Any]]:
    """The ```yaml blocks of the README that are remediator configs (not rules,
    runbooks or Alertmanager's)."""
    found = []
    for block in re.findall(r"```yaml\n(.*?)```", README, re.S):
        data = yaml.safe_load(block)
        listed = [k for k in ("rules", "runbooks") if isinstance((data or {}).get(k), list)]
        if isinstance(data, dict) and set(data) <= TOP_KEYS and not listed:
            found.append(data)
    return found


def distinct_env(data: dict[str, Any]) -> dict[str, str]:
    """Each ${VAR} the block names, set to a value of its own (tokens must differ)."""
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", yaml.safe_dump(data)))
    return {name: f"{name.lower()}-value-0123456789" for name in names}


def test_every_config_example_loads() -> None:
    blocks = config_blocks()
    assert len(blocks) >= 3, "the Configuration, Slack and routing examples"
    for data in blocks:
        settings_mod.from_mapping(data, env=distinct_env(data))


def test_the_documented_pager_urls_are_where_pages_go() -> None:
    [full] = [b for b in config_blocks() if "targets" in b and "pagers" in b]
    settings = settings_mod.from_mapping(full, env=distinct_env(full))
    assert settings.pagers.opsgenie is not None and settings.pagers.pagerduty is not None
    assert settings.pagers.opsgenie.url == "https://api.eu.opsgenie.com"
    assert settings.pagers.pagerduty.url == "https://events.pagerduty.com/v2/enqueue"
    section = README[README.index("## Severity routing") :]
    for key in ("pagers.pagerduty.url", "pagers.opsgenie.url", "pagers.slack.api_url"):
        assert f"`{key}`" in section, key
    eu = "https://events.eu.pagerduty.com/v2/enqueue"
    moved = settings_mod.from_mapping(
        {"pagers": {"pagerduty": {"routing_key": "r" * 32, "url": eu}}}, env={}
    )
    pager = build_pagers(moved)["pagerduty"]
    assert repr(pager).startswith(f"PagerDutyPager(url={eu!r}")


@pytest.mark.parametrize("url", ["events.pagerduty.com/v2/enqueue", "ftp://pagerduty.example"])
@pytest.mark.parametrize("pager", ["pagerduty", "opsgenie"])
def test_a_pager_url_without_http_is_refused_naming_the_key(pager: str, url: str) -> None:
    secret = {"pagerduty": "routing_key", "opsgenie": "api_key"}[pager]
    settings = settings_mod.from_mapping(
        {"pagers": {pager: {secret: "k" * 32, "url": url}}}, env={}
    )
    with pytest.raises(ConfigError, match=rf"^pagers\.{pager}\.url: not an http\(s\) URL"):
        build_pagers(settings)  # as serve does at start
