"""The Dockerfile's promises, read from the file (no Docker daemon here to build it):
multi-stage, pinned install, non-root, read-only friendly, the contract port and
entrypoint; and the default config it ships loads with the real settings loader."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from deploy_support import DEPLOY, REPO

from remediator import settings
from remediator.errors import ConfigError
from remediator.server.app import OperatorAccess

DOCKERFILE = REPO / "Dockerfile"
IMAGE_CONFIG = DEPLOY / "docker" / "config.yaml"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, args in _instructions():
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, args))
    return stages


def _base_image() -> str:
    args = dict(a.split("=", 1) for op, a in _instructions() if op == "ARG" and "=" in a)
    return args["PYTHON_IMAGE"]


def test_build_is_multi_stage_on_python_311_slim() -> None:
    builder, final = _stages()
    assert _base_image() == "python:3.11-slim"
    assert builder[0][1] == "${PYTHON_IMAGE} AS builder"
    assert final[0][1] == "${PYTHON_IMAGE}"
    # Only the virtualenv crosses from the builder into the final image.
    copies = [a for op, a in final if op == "COPY" and a.startswith("--from=")]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_builder_installs_the_project_with_the_pinned_constraints() -> None:
    builder, _ = _stages()
    runs = " ".join(a for op, a in builder if op == "RUN")
    assert "pip install -c constraints.txt ." in runs


def test_final_image_runs_as_uid_10001_on_the_contract_port_and_entrypoint() -> None:
    _, final = _stages()
    ops = dict(final)
    assert ops["USER"] == "10001:10001"
    assert ops["EXPOSE"] == "9095"
    assert json.loads(ops["ENTRYPOINT"]) == ["remediator", "serve"]
    # USER comes after every RUN, so nothing at run time is root.
    last_run = max(i for i, (op, _) in enumerate(final) if op == "RUN")
    assert [op for op, _ in final].index("USER") > last_run


def test_state_lives_on_a_volume_so_the_root_filesystem_can_be_read_only() -> None:
    _, final = _stages()
    ops = dict(final)
    assert json.loads(ops["VOLUME"]) == ["/var/lib/remediator"]
    config = yaml.safe_load(IMAGE_CONFIG.read_text(encoding="utf-8"))
    assert config["state"] == "sqlite:////var/lib/remediator/state.db"


def test_every_copied_source_exists_in_the_repository() -> None:
    for stage in _stages():
        for op, args in stage:
            if op != "COPY" or args.startswith("--from="):
                continue
            *sources, _dest = args.split()
            for source in sources:
                path = REPO / source
                # git keeps no empty directories: one without files is missing in a clone.
                present = path.is_file() or any(p.is_file() for p in path.rglob("*"))
                assert present, f"COPY {source}: missing in a clone, the build would fail"


def test_image_config_loads_in_dry_run_when_given_a_token() -> None:
    loaded = settings.from_mapping(
        yaml.safe_load(IMAGE_CONFIG.read_text(encoding="utf-8")),
        source=str(IMAGE_CONFIG),
        env={"REMEDIATOR_WEBHOOK_TOKEN": "t" * 32},
    )
    assert loaded.mode == "dry-run"
    assert loaded.port == 9095
    assert [t.get_secret_value() for t in loaded.auth.webhook_tokens] == ["t" * 32]
    assert loaded.auth.named_operator_tokens() == {}


def _image_settings(env: dict[str, str]) -> settings.Settings:
    return settings.from_mapping(
        yaml.safe_load(IMAGE_CONFIG.read_text(encoding="utf-8")),
        source=str(IMAGE_CONFIG),
        env=env,
    )


def test_image_config_with_only_the_webhook_token_keeps_operator_routes_closed() -> None:
    """It listens on 0.0.0.0: without an operator token nobody can approve or pause."""
    access = OperatorAccess.from_settings(_image_settings({"REMEDIATOR_WEBHOOK_TOKEN": "t" * 32}))
    assert access.closed and not access.open_locally and not access.tokens


def test_image_config_takes_the_operator_token_from_the_environment() -> None:
    loaded = _image_settings(
        {"REMEDIATOR_WEBHOOK_TOKEN": "t" * 32, "REMEDIATOR_OPERATOR_TOKEN": "o" * 32}
    )
    tokens = OperatorAccess.from_settings(loaded).tokens
    assert {k: v.get_secret_value() for k, v in tokens.items()} == {"operator-1": "o" * 32}
    # One token for both lists would make every Alertmanager peer an operator.
    with pytest.raises(ConfigError, match=r"auth\.operator_tokens operator-1: the same token"):
        _image_settings(
            {"REMEDIATOR_WEBHOOK_TOKEN": "t" * 32, "REMEDIATOR_OPERATOR_TOKEN": "t" * 32}
        )


def test_image_config_refuses_to_start_without_a_webhook_token() -> None:
    with pytest.raises(ConfigError, match="REMEDIATOR_WEBHOOK_TOKEN"):
        settings.from_mapping(
            yaml.safe_load(IMAGE_CONFIG.read_text(encoding="utf-8")),
            source=str(IMAGE_CONFIG),
            env={},
        )
