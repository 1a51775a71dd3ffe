"""Entry point for ``python -m core``: the ``kdmsi`` command line."""

from __future__ import annotations

from core.cli.main import main

raise SystemExit(main())
