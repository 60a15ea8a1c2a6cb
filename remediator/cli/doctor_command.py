"""`remediator doctor`: the configured targets, pagers, routing and runbook steps."""

from __future__ import annotations

import argparse
import sys

import orjson

from remediator.cli.common import load_settings


async def run_doctor(args: argparse.Namespace) -> int:
    from remediator import doctor
    from remediator.runbooks.yaml_runbooks import registry_for

    settings = load_settings(args)
    registry, errors = registry_for(settings.runbooks)
    for error in errors:  # the built-in runbooks are still checked
        print(f"runbooks: {error}", file=sys.stderr)
    report = await doctor.run(settings, registry, test_page=args.test_page)
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_json()).decode() + "\n")
    else:
        print(doctor.format_text(report))
    return 0 if report.ok and not errors else 1
