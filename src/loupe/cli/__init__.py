"""The ``loupe`` command: thin, one module per subcommand, no logic of its own."""
