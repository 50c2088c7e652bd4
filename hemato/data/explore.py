"""Dataset exploration: per-image statistics, thumbnails, duplicate finding and embedding maps, cached on disk.

Everything slow is computed once per image list and stored under ``settings.cache_dir``:

* ``explore/stats_<key>.parquet`` + ``.npy``: size, mean colour, brightness, contrast, colour histograms,
  perceptual hash and SHA-256 of every file (one decode per image, which also writes its thumbnail);
* ``thumbs/``: JPEG thumbnails keyed by path + mtime + size;
* ``explore/embedding_<key>.npz``: 2-D projections of backbone features (via :mod:`hemato.vision.features`).

The statistics are built by the ``explore_stats`` job (:mod:`hemato.jobs`, heavy), so a page polls them and a
reload never loses them; its input, the frame of files to measure, is written to the cache first.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hemato.data.datasets import EXCLUDED_SPLIT, Dataset, normalise_label
from hemato.data.imaging import ImageError, open_image
from hemato.files import atomic_path
from hemato.jobs import JobContext, job

STATS_VERSION = 1
MEASURE_CHUNK = 256
THUMB_SIZE = 160
HIST_BINS = 32
DEFAULT_MAX_DISTANCE = 4
ProgressFn = Callable[[int, int], None]
LEAK_EXPLANATION = (
    "When the same cell (or a near copy) sits in both the training and the test split, the model is graded on "
    "an image it has already memorised, so test accuracy overstates how well it recognises new cells. "
    "A duplicate filed under two different classes is worse: the model is taught two contradictory answers "
    "for one picture, and one of them is counted wrong whatever it predicts."
)


# --------------------------------------------------------------------------------------------- files and keys


def scan_frame(dataset: Dataset) -> pd.DataFrame:
    """Every file on record: the dataset's rows plus rows its manifest marks ``excluded`` (split 'excluded').

    The duplicate finder needs the excluded rows: in PBC the split file excludes exactly the byte duplicates.
    """
    frame = dataset.frame[["path", "label", "split"]].copy()
    if dataset.manifest is None or not dataset.excluded:
        return frame.reset_index(drop=True)
    table = pd.read_csv(dataset.manifest, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    table.columns = [c.strip().lower() for c in table.columns]
    rows = []
    for rec in table.to_dict("records"):
        if (rec.get("split") or "").strip().lower() != EXCLUDED_SPLIT:
            continue
        rel = str(rec["path"]).strip()
        path = Path(rel) if Path(rel).is_absolute() else dataset.root / rel
        if path.is_file():
            rows.append({"path": str(path), "label": normalise_label(rec["label"]), "split": EXCLUDED_SPLIT})
    return pd.concat([frame, pd.DataFrame(rows, columns=frame.columns)], ignore_index=True)


def files_key(paths: Sequence[str]) -> str:
    """Hash of the file list with each file's size and mtime: changes when any file changes."""
    digest = hashlib.sha256(f"v{STATS_VERSION}\n".encode())
    for path in sorted(paths):
        try:
            stat = Path(path).stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()[:16]


def _thumb_file(path: str, cache_dir: Path, size: int) -> Path:
    stat = Path(path).stat()
    key = hashlib.sha1(f"{path}|{stat.st_mtime_ns}|{stat.st_size}|{size}".encode(), usedforsecurity=False)
    digest = key.hexdigest()
    return Path(cache_dir) / "thumbs" / digest[:2] / f"{digest}.jpg"


def _write_thumb(img: Any, target: Path, size: int) -> None:
    thumb = img.copy()
    thumb.thumbnail((size, size))
    with atomic_path(target) as tmp:
        thumb.save(tmp, format="JPEG", quality=85)


def thumbnail_path(path: str, cache_dir: Path, size: int = THUMB_SIZE) -> Path:
    """A JPEG thumbnail of ``path`` (at most ``size`` px), made once and then read from the disk cache.

    Raises:
        ImageError: The image cannot be opened.
    """
    target = _thumb_file(path, cache_dir, size)
    if not target.is_file():
        _write_thumb(open_image(path), target, size)
    return target


# --------------------------------------------------------------------------------------------- per-image stats


@dataclass
class ExploreStats:
    """Per-image measurements: ``table`` (one row per file) and ``hist`` (N, 3, HIST_BINS) colour histograms."""

    table: pd.DataFrame
    hist: np.ndarray
    key: str = ""
    seconds: float = 0.0


def _measure(path: str, cache_dir: Path) -> dict[str, Any]:
    import imagehash

    record: dict[str, Any] = {"path": path}
    try:
        raw = Path(path).read_bytes()
        img = open_image(raw)
    except ImageError as exc:
        record["error"] = f"{Path(path).name}: {exc.reason}"
        return record
    except OSError as exc:
        record["error"] = f"{Path(path).name}: cannot be read ({exc.strerror or exc})"
        return record
    # Everything below comes from 256-bin histograms, which Pillow computes far faster than numpy reductions.
    levels = np.arange(256, dtype=np.float64)
    rgb_hist = np.asarray(img.histogram(), dtype=np.float64).reshape(3, 256)
    grey = img.convert("L")
    grey_hist = np.asarray(grey.histogram(), dtype=np.float64)
    n_pixels = grey_hist.sum()
    mean = rgb_hist @ levels / n_pixels
    brightness = float(grey_hist @ levels / n_pixels)
    contrast = float(np.sqrt(max(grey_hist @ (levels - brightness) ** 2 / n_pixels, 0.0)))
    hist = rgb_hist.reshape(3, HIST_BINS, -1).sum(axis=2).astype(np.float32) / n_pixels
    record.update(
        width=img.width,
        height=img.height,
        mean_r=float(mean[0]),
        mean_g=float(mean[1]),
        mean_b=float(mean[2]),
        brightness=brightness,
        contrast=contrast,
        phash=int(str(imagehash.phash(grey)), 16),
        sha256=hashlib.sha256(raw).hexdigest(),
        hist=hist,
        error="",
    )
    target = _thumb_file(path, cache_dir, THUMB_SIZE)
    if not target.is_file():
        _write_thumb(img, target, THUMB_SIZE)
    return record


def stats_path(cache_dir: Path, key: str) -> Path:
    """Where the statistics for file-list ``key`` are stored (a .parquet table beside a .npy histogram array)."""
    return Path(cache_dir) / "explore" / f"stats_{key}.parquet"


def _attach(table: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    meta = frame[["path", "label", "split"]].drop_duplicates("path")
    return meta.merge(table, on="path", how="left")


def load_stats(frame: pd.DataFrame, cache_dir: Path, key: str | None = None) -> ExploreStats | None:
    """Cached statistics for the files in ``frame`` (joined to its labels and splits), or None if not built."""
    key = key or files_key(frame["path"].tolist())
    path = stats_path(cache_dir, key)
    try:
        table = pd.read_parquet(path)
        hist = np.load(path.with_suffix(".npy"))
    except (OSError, ValueError):
        return None
    order = pd.Series(np.arange(len(table)), index=table["path"])
    merged = _attach(table, frame)
    rows = order.reindex(merged["path"]).to_numpy()
    if np.isnan(rows.astype(float)).any():
        return None
    return ExploreStats(merged, hist[rows.astype(int)], key)


def build_stats(
    frame: pd.DataFrame, cache_dir: Path, progress: ProgressFn | None = None, workers: int = 2
) -> ExploreStats:
    """Measure every image in ``frame`` once (decoding each file a single time) and cache the result.

    Args:
        frame: Rows with at least ``path``, ``label`` and ``split``.
        cache_dir: The settings' cache folder.
        progress: Called with (images done, total).
        workers: Decoding threads (Pillow releases the GIL while decoding).

    Returns:
        The statistics; unreadable files have a non-empty ``error`` column and NaN measurements.
    """
    start = time.perf_counter()
    paths = list(dict.fromkeys(frame["path"].tolist()))
    key = files_key(paths)
    records: list[dict[str, Any]] = []
    # A bounded decode pool, joined here; chunked so a progress callback that raises (cancel) returns promptly.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start_at in range(0, len(paths), MEASURE_CHUNK):
            for record in pool.map(lambda p: _measure(p, cache_dir), paths[start_at : start_at + MEASURE_CHUNK]):
                records.append(record)
                if progress and (len(records) % 25 == 0 or len(records) == len(paths)):
                    progress(len(records), len(paths))
    empty = np.zeros((3, HIST_BINS), np.float32)
    hist = np.stack([r.pop("hist", empty) for r in records]) if records else np.zeros((0, 3, HIST_BINS), np.float32)
    table = pd.DataFrame.from_records(records)
    for column in ("width", "height", "mean_r", "mean_g", "mean_b", "brightness", "contrast", "phash", "sha256"):
        if column not in table:
            table[column] = np.nan
    table["error"] = table.get("error", pd.Series("", index=table.index)).fillna("")
    table["phash"] = table["phash"].astype("UInt64")
    target = stats_path(cache_dir, key)
    with atomic_path(target.with_suffix(".npy")) as tmp:
        np.save(tmp, hist)
    with atomic_path(target) as tmp:  # the table last: its presence says both files are complete
        table.to_parquet(tmp, index=False)
    stats = load_stats(frame, cache_dir, key)
    if stats is None:  # pragma: no cover - only if the disk write silently failed
        raise OSError(f"Could not write the statistics cache at {target}.")
    stats.seconds = time.perf_counter() - start
    return stats


def class_summary(stats: ExploreStats) -> pd.DataFrame:
    """Per-class image count, size range, mean colour and brightness/contrast spread."""
    table = stats.table[stats.table["error"].fillna("") == ""]
    grouped = table.groupby("label")
    summary = pd.DataFrame(
        {
            "images": grouped.size(),
            "width": grouped["width"].agg(
                lambda s: f"{int(s.min())}–{int(s.max())}" if s.nunique() > 1 else int(s.min())
            ),
            "height": grouped["height"].agg(
                lambda s: f"{int(s.min())}–{int(s.max())}" if s.nunique() > 1 else int(s.min())
            ),
            "mean R": grouped["mean_r"].mean().round(1),
            "mean G": grouped["mean_g"].mean().round(1),
            "mean B": grouped["mean_b"].mean().round(1),
            "brightness": grouped["brightness"].mean().round(1),
            "brightness sd": grouped["brightness"].std().round(1),
            "contrast": grouped["contrast"].mean().round(1),
            "contrast sd": grouped["contrast"].std().round(1),
        }
    )
    summary.index.name = "class"
    return summary


def mean_histograms(stats: ExploreStats) -> dict[str, np.ndarray]:
    """Average (3, HIST_BINS) colour histogram per class."""
    ok = (stats.table["error"].fillna("") == "").to_numpy()
    labels = stats.table["label"].to_numpy()
    return {label: stats.hist[ok & (labels == label)].mean(axis=0) for label in sorted(set(labels[ok]))}


# --------------------------------------------------------------------------------------------- duplicates


@dataclass
class DuplicateGroup:
    """Files that are byte-identical or perceptually near-identical."""

    paths: list[str]
    labels: list[str]
    splits: list[str]
    identical: bool
    max_distance: int

    @property
    def crosses_splits(self) -> bool:
        """True when copies sit in different train/val/test splits (excluded rows do not count)."""
        return len({s for s in self.splits if s and s != EXCLUDED_SPLIT}) > 1

    @property
    def crosses_classes(self) -> bool:
        """True when copies carry different labels."""
        return len(set(self.labels)) > 1

    @property
    def n_excluded(self) -> int:
        """Copies the split file already excludes."""
        return sum(s == EXCLUDED_SPLIT for s in self.splits)


def _duplicate_edges(table: pd.DataFrame, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, distance) of rows that are byte-identical or within ``max_distance`` perceptual-hash bits."""
    firsts, others = [], []
    for idx in table.groupby("sha256").indices.values():
        firsts += [int(idx[0])] * (len(idx) - 1)
        others += [int(j) for j in idx[1:]]
    rows, cols, dists = [np.array(firsts, int)], [np.array(others, int)], [np.zeros(len(firsts), int)]
    n = len(table)
    if max_distance > 0 and n > 1:
        hashes = table["phash"].to_numpy(dtype=np.uint64)
        for start in range(0, n, 512):
            distance = np.bitwise_count(hashes[start : start + 512, None] ^ hashes[None, :])
            r, c = np.nonzero(distance <= max_distance)
            keep = start + r < c
            rows.append(start + r[keep])
            cols.append(c[keep])
            dists.append(distance[r[keep], c[keep]].astype(int))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)


def find_duplicates(stats: ExploreStats, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[DuplicateGroup]:
    """Group byte-identical files (same SHA-256) and files whose perceptual hashes differ by ≤ ``max_distance`` bits.

    Groups are the connected components of the "is a copy of" graph (scipy), so near-copies chain into one group.

    Returns:
        Groups of two or more files, those crossing classes or splits first.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    table = stats.table[(stats.table["error"].fillna("") == "") & stats.table["phash"].notna()].reset_index(drop=True)
    n = len(table)
    rows, cols, dists = _duplicate_edges(table, max_distance)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    worst = np.zeros(n, int)
    np.maximum.at(worst, component[rows], dists)
    groups = []
    for root in np.flatnonzero(np.bincount(component, minlength=1) >= 2):
        idx = np.flatnonzero(component == root)
        members = table.iloc[idx]
        groups.append(
            DuplicateGroup(
                paths=members["path"].tolist(),
                labels=members["label"].tolist(),
                splits=[s if isinstance(s, str) else "" for s in members["split"].tolist()],
                identical=members["sha256"].nunique() == 1,
                max_distance=int(worst[root]),
            )
        )
    groups.sort(key=lambda g: (not g.crosses_classes, not g.crosses_splits, not g.identical, g.paths[0]))
    return groups


def duplicates_table(groups: Sequence[DuplicateGroup], root: Path | None = None) -> pd.DataFrame:
    """One row per group, for display: files, classes, splits and flags."""

    def short(path: str) -> str:
        if root is not None:
            try:
                return str(Path(path).relative_to(root))
            except ValueError:
                pass
        return Path(path).name

    return pd.DataFrame(
        [
            {
                "group": i + 1,
                "kind": "byte-identical" if g.identical else f"near (≤{g.max_distance} bits)",
                "files": ", ".join(short(p) for p in g.paths),
                "classes": ", ".join(sorted(set(g.labels))),
                "splits": ", ".join(sorted({s or "—" for s in g.splits})),
                "crosses classes": g.crosses_classes,
                "crosses splits": g.crosses_splits,
                "excluded by split file": g.n_excluded,
            }
            for i, g in enumerate(groups)
        ]
    )


# --------------------------------------------------------------------------------------------- the job


def frame_file(cache_dir: Path, key: str) -> Path:
    """Where the file list of a job is written for the worker (``path, label, split``)."""
    return Path(cache_dir) / "explore" / "frames" / f"{key}.parquet"


def save_frame(frame: pd.DataFrame, cache_dir: Path, key: str) -> Path:
    """Write ``frame``'s ``path, label, split`` columns for a job (once per key); return the file."""
    target = frame_file(cache_dir, key)
    if not target.is_file():
        with atomic_path(target) as tmp:
            frame[["path", "label", "split"]].to_parquet(tmp, index=False)
    return target


def load_frame(path: str | Path) -> pd.DataFrame:
    """A frame written by :func:`save_frame`."""
    return pd.read_parquet(path)


@job("explore_stats", heavy=True, label="Measuring images")
def explore_stats_job(ctx: JobContext, frame_path: str, cache_dir: str) -> dict[str, Any]:
    """The ``explore_stats`` job: :func:`build_stats` over a saved frame, with progress and cancellation."""

    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, "images", "measuring")
        ctx.check_cancel()

    stats = build_stats(load_frame(frame_path), Path(cache_dir), progress)
    ctx.result_path = str(stats_path(Path(cache_dir), stats.key))
    return {"key": stats.key, "images": len(stats.table), "seconds": round(stats.seconds, 1)}
