"""Tests of hemato/data."""
