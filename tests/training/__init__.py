"""Tests of hemato/training."""
