"""`remediator doctor`: the configured targets, pagers, routing and runbook steps."""

from __future__ import annotations

import argparse
import sys

import orjson

from remediator.cli.common import load_settings


async def run_doctor(args: argparse.Namespace) -> int:
    from remediator import doctor
    from remediator.runbook_api.registry import load_entry_points

    report = await doctor.run(load_settings(args), load_entry_points(), test_page=args.test_page)
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_json()).decode() + "\n")
    else:
        print(doctor.format_text(report))
    return 0 if report.ok else 1
