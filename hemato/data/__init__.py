"""Datasets: discovery of layouts, checks, splits, defensive image opening, archives, exploration statistics."""
