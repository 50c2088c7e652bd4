"""AppTests of the pages (one per page)."""
