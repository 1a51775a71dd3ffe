"""Entry point for ``python -m core``: the ``kdmsi`` command line."""

from __future__ import annotations

import os

from core.cli.main import main

code = main()
if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1"):  # a torchrun rank
    from core.runtime.distributed import exit_rank

    exit_rank(code)
raise SystemExit(code)
