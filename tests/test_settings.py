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
    s = settings.load(
        f, env={"HOOK": "hook-secret-0123456789", "PD_KEY": "pd-secret", "PGPASS": "pw-secret"}
    )
    assert s.auth.webhook_tokens[0].get_secret_value() == "hook-secret-0123456789"
    text = repr(s) + str(s)
    for secret in ("hook-secret-0123456789", "pd-secret", "pw-secret"):
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
        {"listen": "0.0.0.0:9095", "auth": {"webhook_tokens": ["t0k3n-t0k3n-t0k3n"]}}, env={}
    )
    # an unset variable with an empty default must not count as a token
    with pytest.raises(ConfigError, match="not loopback"):
        settings.from_mapping(
            {"listen": "0.0.0.0:9095", "auth": {"webhook_tokens": ["${UNSET:-}"]}}, env={}
        )


HOOK = "webhook-token-0123456789"
OPS = "operator-token-0123456789"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (
            "{webhook_tokens: [short-token]}",
            r"c.yaml: auth.webhook_tokens: .*entry 0 is 11 characters; .*at least 16",
        ),
        (
            f"{{webhook_tokens: [{HOOK}], operator_tokens: {{alice: abc}}}}",
            r"c.yaml: auth.operator_tokens: .*token 'alice' is 3 characters",
        ),
        (
            "{operator_tokens: ['   ']}",
            r"c.yaml: auth.operator_tokens: .*entry 0 is only whitespace",
        ),
        ('{webhook_tokens: ["\\t "]}', r"c.yaml: auth.webhook_tokens: .*only whitespace"),
        (
            f"{{webhook_tokens: [{HOOK}], operator_tokens: {{alice: {HOOK}}}}}",
            r"c.yaml: auth: .*auth.operator_tokens alice: the same token is also in "
            r"auth.webhook_tokens",
        ),
        (
            f"{{webhook_tokens: [{OPS}], operator_tokens: [' {OPS} ']}}",
            r"auth.operator_tokens operator-1: the same token is also in auth.webhook_tokens",
        ),
        ("{operator_tokens: [1234567890123456789]}", r"auth.operator_tokens: .*must be a string"),
    ],
)
def test_weak_or_shared_tokens_are_refused_naming_the_key(tmp_path: Path, auth: str, message: str):
    f = tmp_path / "c.yaml"
    f.write_text(f"auth: {auth}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        settings.load(f, env={})
    assert HOOK not in str(caught.value) and OPS not in str(caught.value)


def test_tokens_are_stripped_and_unset_optional_tokens_dropped(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "auth:\n  webhook_tokens: ['${HOOK}', '${UNSET:-}']\n"
        "  operator_tokens: {alice: '${OPS}', bob: '${UNSET:-}'}\n"
    )
    s = settings.load(f, env={"HOOK": f"{HOOK}\n", "OPS": f"  {OPS}"})
    assert [t.get_secret_value() for t in s.auth.webhook_tokens] == [HOOK]
    ops = s.auth.named_operator_tokens()
    assert {k: v.get_secret_value() for k, v in ops.items()} == {"alice": OPS}


def test_label_limits_default_and_must_be_positive(tmp_path: Path):
    limits = settings.load(None, env={}).limits
    assert (limits.max_label_bytes, limits.max_labels) == (4096, 64)
    f = tmp_path / "c.yaml"
    f.write_text("limits: {max_label_bytes: 0}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: limits.max_label_bytes: .*greater than 0"):
        settings.load(f, env={})


def test_max_pages_per_hour_defaults_to_60_and_must_be_positive(tmp_path: Path):
    assert settings.load(None, env={}).pagers.max_pages_per_hour == 60
    f = tmp_path / "c.yaml"
    f.write_text("pagers: {max_pages_per_hour: 0}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: pagers.max_pages_per_hour: .*greater than 0"):
        settings.load(f, env={})
