"""Training runs, their registry and background worker."""
