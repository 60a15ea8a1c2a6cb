"""`remediator check-rules` and `remediator replay`: the rules, read and planned offline."""

from __future__ import annotations

import argparse
import json
import sys

from remediator.cli.common import load_settings
from remediator.errors import ConfigError
from remediator.settings import Settings


def check_rules(args: argparse.Namespace) -> int:
    from remediator.engine import rules
    from remediator.engine.verify import warnings as verify_warnings
    from remediator.runbooks.yaml_runbooks import registry_for

    # Read once. A bare rules file may be checked whatever the config says; a config
    # named with --config must be readable.
    settings: Settings | None
    try:
        settings = load_settings(args)
    except ConfigError:
        if args.path is None or getattr(args, "config", None) is not None:
            raise
        settings = None
    path: str = args.path or (settings.rules if settings is not None else "")
    runbooks = args.runbooks or (settings.runbooks if settings is not None else None)
    registry, errors = registry_for(runbooks)
    ruleset = None
    if not errors:  # rules name runbooks: check them against a complete registry
        ruleset, errors = rules.load(path, registry)
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        print(f"FAILED: {len(errors)} error(s)", file=sys.stderr)
        return 1
    assert ruleset is not None
    # Valid rules a runbook still finds unsafe or inert as they stand (RB-06 with an
    # empty allow_list). They do not fail the check: the shipped rules carry one until
    # a user fills in their own networks, and CI must not break on that.
    warned = 0
    # Only with a config: without one, nothing says whether Grafana can corroborate.
    no_grafana = (
        getattr(args, "config", None) is not None
        and settings is not None
        and settings.targets.grafana is None
    )
    for rule in ruleset.rules:
        runbook = registry.get(rule.runbook)
        warnings = list(runbook.warnings(rule.params)) if runbook is not None else []
        if no_grafana:
            from remediator.engine.sources import GRAFANA_UNCORROBORATED

            warnings.append(GRAFANA_UNCORROBORATED)
        for warning in warnings:
            print(f"{rule.source}: rule {rule.name!r}: warning: {warning}", file=sys.stderr)
            warned += 1
    # Without a readable config nothing says Prometheus is missing: no warning.
    prometheus_configured = settings is None or settings.targets.prometheus is not None
    for warning in verify_warnings(ruleset, prometheus_configured):
        print(warning, file=sys.stderr)
        warned += 1
    note = f" ({warned} warning(s), on stderr)" if warned else ""
    yaml_note = f"; YAML runbooks from {runbooks}" if runbooks else ""
    print(f"SUCCESS: {len(ruleset)} rules found in {', '.join(ruleset.sources)}{yaml_note}{note}")
    return 0


def replay_payload(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from remediator.engine import replay, rules
    from remediator.models import WebhookPayload
    from remediator.ops.errors import validation_lines
    from remediator.runbooks.yaml_runbooks import registry_for

    settings = load_settings(args)
    registry, errors = registry_for(args.runbooks or settings.runbooks)
    ruleset = None
    if not errors:
        ruleset, errors = rules.load(args.rules or settings.rules, registry)
    if ruleset is None:
        for e in errors:
            print(e, file=sys.stderr)
        return 1
    name = "<stdin>" if args.payload == "-" else args.payload
    try:
        if args.payload == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.payload, "rb") as f:
                raw = f.read()
        payload = WebhookPayload.model_validate_json(raw)
    except OSError as exc:
        print(f"{name}: {exc.strerror}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"{name}: not an Alertmanager v4 payload:", file=sys.stderr)
        for line in validation_lines(exc):
            print(f"  {line}", file=sys.stderr)
        return 1
    entries = replay.plan(payload, ruleset, registry, settings)
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
    else:
        print(replay.format_timeline(entries))
    return 0
