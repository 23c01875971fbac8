"""Command lines: one parser base, one main wrapper, layered configs, the commands."""
