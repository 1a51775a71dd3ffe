"""One module per ``kdmsi`` subcommand: ``add_arguments(parser)`` and ``run(args, reporter)``."""
