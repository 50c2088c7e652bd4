"""Embedding maps: class-proportional samples and 2-D projections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hemato.vision.embedding import project, sample_rows


def test_sample_rows_and_pca_projection() -> None:
    frame = pd.DataFrame({"path": [f"p{i}" for i in range(50)], "label": ["A", "B"] * 25, "split": "train"})
    sample = sample_rows(frame, 20, seed=1)
    assert len(sample) == 20 and sample["path"].is_unique
    assert sample_rows(frame, 20, seed=1).equals(sample)
    assert len(sample_rows(frame, 500)) == 50
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(6, 1, (20, 8))])
    coords, explained = project(features, "pca")
    assert coords.shape == (40, 2) and 0 < explained[0] <= 1
    assert abs(coords[:20, 0].mean() - coords[20:, 0].mean()) > 5, "two separated clusters stay apart"
    tsne, _ = project(features, "tsne")
    assert tsne.shape == (40, 2) and np.isfinite(tsne).all()
    with pytest.raises(ValueError, match="projection"):
        project(features, "umap")
