"""Entry point for ``python -m hemato``."""

from hemato.cli import main

raise SystemExit(main())
