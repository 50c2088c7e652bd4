"""One module per ``python -m hemato`` command."""
