"""Config: defaults, ${ENV}, errors naming key and file, secrets never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediator import settings
from remediator.errors import ConfigError


def test_defaults_need_no_file():
    s = settings.load(None, env={})
    assert (s.listen, s.mode, s.rules) == ("127.0.0.1:9095", "dry-run", "rules/")
    assert s.state.get_secret_value() == "sqlite:///./remediator-state.db"


def test_remediator_config_env_names_the_file(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("mode: live\n")
    assert settings.load(None, env={"REMEDIATOR_CONFIG": str(f)}).mode == "live"


def test_env_interpolation_and_secret_redaction(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "auth:\n  webhook_tokens: ['${HOOK}']\n"
        "pagers:\n  pagerduty: {routing_key: '${PD_KEY}'}\n"
        "state: postgresql://u:${PGPASS}@127.0.0.1/test\n"
    )
    s = settings.load(f, env={"HOOK": "hook-secret", "PD_KEY": "pd-secret", "PGPASS": "pw-secret"})
    assert s.auth.webhook_tokens[0].get_secret_value() == "hook-secret"
    text = repr(s) + str(s)
    for secret in ("hook-secret", "pd-secret", "pw-secret"):
        assert secret not in text


def test_missing_env_var_is_an_error_naming_the_key(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("pagers:\n  slack: {webhook_url: '${SLACK_URL}'}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: pagers.slack.webhook_url: .*SLACK_URL"):
        settings.load(f, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen: 127.0.0.1:9095\nbogus: 1\n", r"c.yaml: bogus: unknown key"),
        ("limits: {workers: many}\n", r"c.yaml: limits.workers: Input should be a valid integer"),
        ("targets: {kubernetes: {mode: sideways}}\n", r"c.yaml: targets.kubernetes.mode"),
        ("mode: yolo\n", r"c.yaml: mode"),
        (
            "pagers: {pagerduty: {routing_key: k, extra: 1}}\n",
            r"pagers.pagerduty.extra: unknown key",
        ),
        ("listen: [1\n", r"c.yaml:2: invalid YAML"),
    ],
)
def test_bad_config_is_an_error_naming_key_and_file(tmp_path: Path, text: str, message: str):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        settings.load(f, env={})


def test_yaml11_bare_off_still_means_off(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("targets:\n  kubernetes: {mode: off, namespace: prod}\n")
    assert settings.load(f, env={}).targets.kubernetes.mode == "off"


def test_non_loopback_without_tokens_is_refused_unless_allowed():
    with pytest.raises(ConfigError, match="not loopback"):
        settings.from_mapping({"listen": "0.0.0.0:9095"}, env={})
    assert (
        settings.from_mapping(
            {"listen": "0.0.0.0:9095", "allow_unauthenticated": True}, env={}
        ).listen
        == "0.0.0.0:9095"
    )
    assert settings.from_mapping(
        {"listen": "0.0.0.0:9095", "auth": {"webhook_tokens": ["t0k3n"]}}, env={}
    )
    # an unset variable with an empty default must not count as a token
    with pytest.raises(ConfigError, match="not loopback"):
        settings.from_mapping(
            {"listen": "0.0.0.0:9095", "auth": {"webhook_tokens": ["${UNSET:-}"]}}, env={}
        )
