"""Embedding maps: backbone features of a dataset sample projected to 2-D (PCA or t-SNE), cached on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hemato.data.explore import load_frame
from hemato.files import atomic_path
from hemato.jobs import JobContext, job
from hemato.vision.features import cached_features

ProgressFn = Callable[[int, int], None]

EMBED_BACKBONE = "mobilenet_v2"


EMBED_SIZE = 224


@dataclass
class Embedding:
    """2-D coordinates of a sample of images, with their labels."""

    coords: np.ndarray
    paths: list[str]
    labels: list[str]
    splits: list[str]
    method: str
    explained: list[float] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """Coordinates as a plotting table."""
        return pd.DataFrame(
            {
                "x": self.coords[:, 0],
                "y": self.coords[:, 1],
                "label": self.labels,
                "split": self.splits,
                "path": self.paths,
                "file": [Path(p).name for p in self.paths],
            }
        )


def sample_rows(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """A class-proportional random sample of ``n`` rows (all rows when ``n`` ≥ len), in a stable order."""
    if n >= len(frame):
        return frame.reset_index(drop=True)
    picked = frame.sample(n=n, random_state=seed)
    return picked.sort_values("path").reset_index(drop=True)


def embedding_path(cache_dir: Path, key: str, method: str) -> Path:
    """Where a projection is cached."""
    return Path(cache_dir) / "explore" / f"embedding_{key}_{method}.npz"


def embedding_key(paths: Sequence[str]) -> str:
    """Cache key of an embedding sample."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]


def load_embedding(frame: pd.DataFrame, cache_dir: Path, method: str) -> Embedding | None:
    """A cached projection of exactly ``frame``'s rows, or None."""
    path = embedding_path(cache_dir, embedding_key(frame["path"].tolist()), method)
    try:
        with np.load(path) as data:
            coords, explained = data["coords"], data["explained"].tolist()
    except (OSError, KeyError, ValueError):
        return None
    splits = [s if isinstance(s, str) else "" for s in frame["split"].tolist()]
    return Embedding(coords, frame["path"].tolist(), frame["label"].tolist(), splits, method, explained)


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Project features to 2-D with PCA or t-SNE (t-SNE runs on the top 50 PCA components)."""
    from sklearn.decomposition import PCA

    if method not in ("pca", "tsne"):
        raise ValueError(f"Unknown projection {method!r}; use 'pca' or 'tsne'.")
    if len(features) < 3:
        raise ValueError("An embedding map needs at least 3 images.")
    if method == "pca":
        pca = PCA(n_components=2, random_state=seed)
        return pca.fit_transform(features), pca.explained_variance_ratio_.tolist()
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(50, len(features) - 1, features.shape[1]), random_state=seed).fit_transform(features)
    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    return coords, []


def compute_embedding(
    frame: pd.DataFrame,
    cache_dir: Path,
    weights_dir: Path | None,
    method: str = "pca",
    progress: ProgressFn | None = None,
) -> Embedding:
    """MobileNetV2 features of ``frame``'s images (cached by :mod:`hemato.vision.features`) projected to 2-D.

    Args:
        frame: The rows to embed (usually a :func:`sample_rows` sample).
        cache_dir: The settings' cache folder.
        weights_dir: Local ImageNet weights folder.
        method: ``pca`` or ``tsne``.
        progress: Called with (images done, total) during feature extraction.

    Returns:
        The projection, also cached on disk.
    """
    # The feature cache is per image, so features training already extracted are reused here.
    features, _ = cached_features(EMBED_BACKBONE, EMBED_SIZE, frame["path"].tolist(), cache_dir, weights_dir, progress)
    coords, explained = project(features, method)
    target = embedding_path(cache_dir, embedding_key(frame["path"].tolist()), method)
    with atomic_path(target) as tmp:
        np.savez(tmp, coords=coords, explained=np.array(explained))
    embedding = load_embedding(frame, cache_dir, method)
    assert embedding is not None
    return embedding


@job("explore_embedding", heavy=True, label="Embedding map")
def embedding_job(
    ctx: JobContext, frame_path: str, cache_dir: str, weights_dir: str | None, method: str
) -> dict[str, object]:
    """The ``explore_embedding`` job: :func:`compute_embedding` of a saved sample frame."""

    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, "images", "extracting MobileNetV2 features")
        ctx.check_cancel()

    frame = load_frame(frame_path)
    embedding = compute_embedding(frame, Path(cache_dir), Path(weights_dir) if weights_dir else None, method, progress)
    ctx.result_path = str(embedding_path(Path(cache_dir), embedding_key(frame["path"].tolist()), method))
    return {"images": len(embedding.paths), "method": method}
