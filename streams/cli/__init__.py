"""``rwe``: the command line, one module per command."""
