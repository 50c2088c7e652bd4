"""Backbone features extracted once per (backbone, input size, weights, image list) and cached on disk.

Training's head phase and the dataset explorer's embedding map both read this cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hemato.data import load_images

ProgressFn = Callable[[int, int], None]
BATCH_SIZE = 64


def features_key(backbone: str, input_size: int, weights_source: str, paths: Sequence[str]) -> str:
    """Cache key for one feature matrix: changes when any input to it changes."""
    digest = hashlib.sha256(f"{backbone}|{input_size}|{weights_source}\n".encode())
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{path}|{stat.st_size}|{int(stat.st_mtime)}\n".encode())
    return f"{backbone}_{input_size}_{digest.hexdigest()[:16]}"


def cache_path(cache_dir: Path, key: str) -> Path:
    """Where the features for ``key`` live."""
    return Path(cache_dir) / "features" / f"{key}.npz"


def load_cached(cache_dir: Path, key: str) -> np.ndarray | None:
    """Cached features for ``key``, or None when absent or unreadable."""
    path = cache_path(cache_dir, key)
    try:
        with np.load(path) as data:
            return data["features"]
    except (OSError, KeyError, ValueError):
        return None


def extract_features(
    extractor: Callable[[np.ndarray], np.ndarray],
    paths: Sequence[str],
    input_size: int,
    progress: ProgressFn | None = None,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Run ``extractor`` over every image, decoding the next batch while the current one computes.

    Args:
        extractor: Maps a float32 batch (N, S, S, 3) in [0, 255] to features (N, D).
        paths: Image files.
        input_size: Square side images are resized to.
        progress: Called with (images done, total) after each batch.
        batch_size: Images per batch.

    Returns:
        A float32 array (len(paths), D).
    """
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    out: list[np.ndarray] = []
    done = 0
    with ThreadPoolExecutor(max_workers=1) as loader:
        pending = loader.submit(load_images, chunks[0], input_size) if chunks else None
        for i in range(len(chunks)):
            batch = pending.result()
            if i + 1 < len(chunks):
                pending = loader.submit(load_images, chunks[i + 1], input_size)
            out.append(np.asarray(extractor(batch.astype(np.float32)), dtype=np.float32))
            done += len(batch)
            if progress:
                progress(done, len(paths))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def cached_features(
    backbone: str,
    input_size: int,
    paths: Sequence[str],
    cache_dir: Path,
    weights_dir: Path | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, str]:
    """Pooled ImageNet-backbone features for ``paths``, computed once and then read from disk.

    Args:
        backbone: ``mobilenet_v2`` or ``vgg16``.
        input_size: Square input side.
        paths: Image files, in the order rows are wanted.
        cache_dir: The settings' cache folder.
        weights_dir: Local ImageNet weights folder.
        progress: Called with (done, total) while extracting.

    Returns:
        ``(features, weights_source)``.

    Raises:
        WeightsUnavailableError: No ImageNet weights for the backbone.
    """
    from hemato.models import build_model, feature_extractor, local_weights_path

    local = local_weights_path(backbone, weights_dir)
    source_hint = f"local:{local.name}" if local else "online"
    key = features_key(backbone, input_size, source_hint, paths)
    cached = load_cached(cache_dir, key)
    if cached is not None and len(cached) == len(paths):
        if progress:
            progress(len(paths), len(paths))
        return cached, source_hint
    import tensorflow as tf

    model, _ = build_model(backbone, 2, input_size, weights="imagenet", weights_dir=weights_dir)
    extractor = feature_extractor(model)
    run = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)
    features = extract_features(lambda x: run(tf.constant(x)).numpy(), paths, input_size, progress)
    target = cache_path(cache_dir, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.npz")
    np.savez(tmp, features=features)
    tmp.replace(target)
    target.with_suffix(".json").write_text(json.dumps({"backbone": backbone, "size": input_size, "n": len(paths)}))
    return features, source_hint
