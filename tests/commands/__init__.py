"""Tests of the command line (hemato/commands)."""
