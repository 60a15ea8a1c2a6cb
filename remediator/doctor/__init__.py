"""``remediator doctor``: a preflight of the configured world (DESIGN "CLI").

For each target and pager: reachable, authenticated, allowed to do what the runbooks
need; per runbook, which steps can run and why not; which severities reach which
pager. ``run()`` builds the ``Report``; ``report.format_text`` and
``Report.to_json`` render it; ``startup`` logs it when ``serve`` starts.

Modules: ``needs`` (the vocabulary), ``catalog`` (each step's needs), ``database``
and ``targets`` (the checks), ``evaluate`` (steps judged), ``run`` (all of it,
bounded in time), ``report``, ``startup``. Nothing here mutates a target; a page
goes out only with ``--test-page``.
"""

from remediator.doctor.report import Report, format_text
from remediator.doctor.run import run

__all__ = ["Report", "format_text", "run"]
