"""Tests of hemato/vision."""
