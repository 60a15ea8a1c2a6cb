"""``python -m remediator.cli``, as when the CLI was one module."""

from remediator.cli import main

raise SystemExit(main())
