"""CLI subcommand modules, one per package they delegate to."""
