"""The ``kdmsi`` command line.

The entry point (``main``), the JSON-lines events and one module per subcommand.
"""
