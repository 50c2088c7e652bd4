"""Backbone features, extracted once per image and cached on disk per (backbone, input size, weights).

The cache is keyed per image (path, size, mtime), so any subset — a training split, an explorer
sample — reuses what an earlier run computed and extracts only what is missing.
Training's head phase and the dataset explorer's embedding map both read it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hemato.data.datasets import load_images
from hemato.files import atomic_path
from hemato.vision.models import build_model, compiled_forward, feature_extractor, local_weights_path

ProgressFn = Callable[[int, int], None]
LoaderFn = Callable[[Sequence[str]], np.ndarray]
BATCH_SIZE = 64


def image_signature(path: str) -> str:
    """Identity of one image file for the cache: path, size and modification time."""
    stat = Path(path).stat()
    return f"{path}|{stat.st_size}|{int(stat.st_mtime)}"


def cache_file(cache_dir: Path, backbone: str, input_size: int, weights_source: str) -> Path:
    """The feature store for one (backbone, size, weights) combination."""
    tag = hashlib.sha256(weights_source.encode()).hexdigest()[:8]
    return Path(cache_dir) / "features" / f"{backbone}_{input_size}_{tag}.npz"


def _read_store(path: Path) -> tuple[list[str], np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["signatures"].tolist(), data["features"]
    except (OSError, KeyError, ValueError):
        return [], None


def _write_store(path: Path, signatures: list[str], features: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, signatures=np.array(signatures), features=features.astype(np.float32))


def extract_features(
    extractor: Callable[[np.ndarray], np.ndarray],
    paths: Sequence[str],
    input_size: int,
    progress: ProgressFn | None = None,
    batch_size: int = BATCH_SIZE,
    loader: LoaderFn | None = None,
) -> np.ndarray:
    """Run ``extractor`` over every image, decoding the next batch while the current one computes.

    Args:
        extractor: Maps a float32 batch (N, S, S, 3) in [0, 255] to features (N, D).
        paths: Image files.
        input_size: Square side images are resized to.
        progress: Called with (images done, total) after each batch.
        batch_size: Images per batch.
        loader: Returns the uint8 batch for a chunk of paths (default: decode from disk).

    Returns:
        A float32 array (len(paths), D).
    """
    load = loader or (lambda chunk: load_images(chunk, input_size))
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    out: list[np.ndarray] = []
    done = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            batch = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(load, chunks[i + 1])
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
    loader: LoaderFn | None = None,
) -> tuple[np.ndarray, str]:
    """Pooled ImageNet-backbone features for ``paths``; only images not cached yet are computed.

    Args:
        backbone: ``mobilenet_v2`` or ``vgg16``.
        input_size: Square input side.
        paths: Image files, in the order rows are wanted.
        cache_dir: The settings' cache folder.
        weights_dir: Local ImageNet weights folder.
        progress: Called with (done, total) while extracting.
        loader: Optional batch loader (e.g. from images already in memory).

    Returns:
        ``(features, weights_source)``: a float32 (len(paths), D) array and where the weights came from.

    Raises:
        WeightsUnavailableError: No ImageNet weights for the backbone.
    """
    local = local_weights_path(backbone, weights_dir)
    source = f"imagenet (local file {local.name})" if local else "imagenet (downloaded by Keras)"
    store = cache_file(cache_dir, backbone, input_size, source)
    signatures, stored = _read_store(store)
    index = {sig: i for i, sig in enumerate(signatures)}
    wanted = [image_signature(p) for p in paths]
    missing = [i for i, sig in enumerate(wanted) if sig not in index]
    if missing:
        model, source = build_model(backbone, 2, input_size, weights="imagenet", weights_dir=weights_dir)
        fresh = extract_features(
            compiled_forward(feature_extractor(model)), [paths[i] for i in missing], input_size, progress, loader=loader
        )
        new_sigs = [wanted[i] for i in missing]
        stored = fresh if stored is None else np.concatenate([stored, fresh])
        signatures = signatures + new_sigs
        _write_store(store, signatures, stored)
        index = {sig: i for i, sig in enumerate(signatures)}
    elif progress:
        progress(len(paths), len(paths))
    rows = [index[sig] for sig in wanted]
    return (stored[rows] if rows else np.zeros((0, 0), np.float32)), source
