"""Tests of hemato/teaching."""
