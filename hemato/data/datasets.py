"""Dataset discovery, checking, splitting and input pipelines.

Accepted layouts (classes always come from the data):

* class sub-folders, any case: ``ROOT/<class>/*.jpg``;
* with a split level: ``ROOT/<split>/<class>/*.jpg`` (``train``/``val``/``test``, ``TRAIN``/``TEST``, …),
  possibly below a few single wrapper folders (the Kaggle blood-cells layout);
* a CSV manifest ``path,label[,split,group]`` with paths relative to the CSV's folder (or to a given
  root); rows whose split is ``excluded`` are skipped.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hemato.data.imaging import is_image_path, load_array, probe_image

if TYPE_CHECKING:
    pass

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "test_simple": "test_simple",
}
EXCLUDED_SPLIT = "excluded"
MIN_IMAGES_PER_CLASS = 2
MAX_SEARCH_DEPTH = 4
COLUMNS = ["path", "label", "split", "group"]


class DatasetError(ValueError):
    """A dataset that cannot be used, with a message saying what to do."""


@dataclass(frozen=True)
class Dataset:
    """A labelled image collection: one row per image, absolute paths."""

    root: Path
    frame: pd.DataFrame
    source: str
    manifest: Path | None = None
    problems: tuple[tuple[str, str], ...] = ()
    excluded: int = 0

    @property
    def name(self) -> str:
        """Short display name (the root folder's name)."""
        return self.root.name

    @property
    def classes(self) -> list[str]:
        """Sorted class labels present in the data."""
        return sorted(self.frame["label"].unique().tolist())

    @property
    def splits(self) -> list[str]:
        """Split names present, in train/val/test order, empty when the data has no split."""
        present = [s for s in self.frame["split"].dropna().unique().tolist() if s]
        order = {"train": 0, "val": 1, "test": 2}
        return sorted(present, key=lambda s: (order.get(s, 3), s))

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, split: str | None) -> Dataset:
        """Rows of one split (``None`` or ``"all"`` keeps everything)."""
        if split in (None, "all"):
            return self
        if split not in self.splits:
            raise DatasetError(
                f"Split {split!r} not found in {self.root}; available: {', '.join(self.splits) or 'none'}."
            )
        part = self.frame[self.frame["split"] == split].reset_index(drop=True)
        return Dataset(self.root, part, self.source, self.manifest)

    @property
    def n_files(self) -> int:
        """Images on record, including rows the manifest marks ``excluded``."""
        return len(self) + self.excluded

    def class_counts(self) -> dict[str, int]:
        """Images per class."""
        return {k: int(v) for k, v in self.frame["label"].value_counts().sort_index().items()}

    def split_counts(self) -> pd.DataFrame:
        """A class × split table of image counts (empty when there is no split)."""
        if not self.splits:
            return pd.DataFrame()
        table = pd.crosstab(self.frame["label"], self.frame["split"])
        return table[self.splits]

    def fingerprint(self) -> str:
        """Stable hash of the image list, labels and splits (for caches and model cards)."""
        digest = hashlib.sha256()
        for row in self.frame[["path", "label", "split"]].itertuples(index=False):
            digest.update(f"{row.path}|{row.label}|{row.split}\n".encode())
        return digest.hexdigest()[:16]


@dataclass
class DataReport:
    """Outcome of :func:`check_dataset`."""

    dataset: Dataset
    class_counts: dict[str, int]
    split_counts: pd.DataFrame
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    suspicious: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """True when the data can train and evaluate a classifier."""
        return not self.errors


def normalise_label(label: str) -> str:
    """Class labels are compared case-insensitively and shown upper-case."""
    return str(label).strip().upper()


def _split_of(name: str) -> str | None:
    return SPLIT_NAMES.get(name.strip().lower())


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    except OSError:
        return []


def _images_in(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_file() and is_image_path(p))
    except OSError:
        return []


def _is_class_folder_root(path: Path) -> bool:
    return any(_images_in(d) for d in _subdirs(path))


def _is_split_root(path: Path) -> bool:
    splits = [d for d in _subdirs(path) if _split_of(d.name)]
    return bool(splits) and any(_is_class_folder_root(d) for d in splits)


def _find_manifest(path: Path) -> Path | None:
    candidates = []
    for csv_path in sorted(path.glob("*.csv")):
        header = _read_header(csv_path)
        if {"path", "label"} <= header:
            candidates.append((("split" not in header), csv_path.name, csv_path))
    return min(candidates)[2] if candidates else None


def _read_header(csv_path: Path) -> set[str]:
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            return {h.strip().lower() for h in next(csv.reader(fh), [])}
    except (OSError, UnicodeDecodeError):
        return set()


def _frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=COLUMNS)
    return frame.astype({"path": str, "label": str}).reset_index(drop=True)


def _from_folders(root: Path, split_level: bool) -> Dataset:
    rows = []
    split_dirs = [(d, _split_of(d.name)) for d in _subdirs(root)] if split_level else [(root, None)]
    for split_dir, split in split_dirs:
        if split_level and split is None:
            continue
        for class_dir in _subdirs(split_dir):
            for img in _images_in(class_dir):
                rows.append({"path": str(img), "label": normalise_label(class_dir.name), "split": split})
    source = "split folders" if split_level else "class folders"
    return Dataset(root, _frame(rows), source)


def load_manifest(csv_path: Path, root: Path | None = None) -> Dataset:
    """Read a ``path,label[,split,group]`` CSV; paths are relative to ``root`` (default: the CSV's folder)."""
    root = (root or csv_path.parent).resolve()
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Cannot read manifest {csv_path}: {exc}") from exc
    table.columns = [c.strip().lower() for c in table.columns]
    if not {"path", "label"} <= set(table.columns):
        raise DatasetError(f"Manifest {csv_path.name} needs 'path' and 'label' columns; it has {list(table.columns)}.")
    group_col = next((c for c in table.columns if c == "group" or c.endswith("_group")), None)
    rows, problems, excluded = [], [], 0
    for rec in table.to_dict("records"):
        split = (rec.get("split") or "").strip().lower() or None
        if split == EXCLUDED_SPLIT:
            excluded += 1
            continue
        rel = str(rec["path"]).strip()
        path = Path(rel) if Path(rel).is_absolute() else root / rel
        if not path.is_file():
            problems.append((rel, "listed in the manifest but missing on disk"))
            continue
        rows.append(
            {
                "path": str(path),
                "label": normalise_label(rec["label"]),
                "split": SPLIT_NAMES.get(split, split) if split else None,
                "group": (rec.get(group_col) or None) if group_col else None,
            }
        )
    return Dataset(root, _frame(rows), "manifest", csv_path.resolve(), tuple(problems), excluded)


def discover_dataset(path: str | Path, split_csv: str | Path | None = None) -> Dataset:
    """Find the dataset at ``path`` in any accepted layout.

    Args:
        path: A dataset folder or a CSV manifest.
        split_csv: Optional manifest whose paths are relative to ``path``; overrides folder discovery.

    Returns:
        The dataset (possibly empty; run :func:`check_dataset` to judge it).

    Raises:
        DatasetError: The path does not exist or holds no recognisable layout.
    """
    path = Path(path).expanduser().resolve()
    if split_csv is not None:
        return load_manifest(Path(split_csv).expanduser().resolve(), root=path if path.is_dir() else None)
    if path.is_file() and path.suffix.lower() == ".csv":
        return load_manifest(path)
    if not path.is_dir():
        raise DatasetError(f"{path} does not exist or is not a folder; point to a dataset folder or a CSV manifest.")
    manifest = _find_manifest(path)
    if manifest is not None:
        return load_manifest(manifest)
    frontier = [path]
    for _ in range(MAX_SEARCH_DEPTH):
        for candidate in frontier:
            if _is_split_root(candidate):
                return _from_folders(candidate, split_level=True)
            if _is_class_folder_root(candidate):
                return _from_folders(candidate, split_level=False)
        frontier = [d for f in frontier for d in _subdirs(f)]
    raise DatasetError(
        f"No images found in {path}. Expected class sub-folders (e.g. EOSINOPHIL/, LYMPHOCYTE/ …), "
        "optionally under train/val/test, or a CSV manifest with path,label columns."
    )


def looks_like_dataset(path: Path) -> bool:
    """Cheap test: does ``path`` hold any image or a manifest within a few levels?"""
    if not path.is_dir():
        return False
    if _find_manifest(path) is not None:
        return True
    return any(is_image_path(p) for p in path.rglob("*") if len(p.relative_to(path).parts) <= MAX_SEARCH_DEPTH + 1)


def _sha1(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def _suspicious_size(path: str) -> str | None:
    from PIL import Image

    with Image.open(path) as img:
        width, height = img.size
    if min(width, height) < 16:
        return f"very small ({width}×{height} px)"
    if max(width, height) / min(width, height) > 4:
        return f"extreme aspect ratio ({width}×{height} px)"
    return None


def check_dataset(dataset: Dataset, decode: bool = True, workers: int = 4) -> DataReport:
    """Judge a dataset: counts, unreadable and suspicious files, and whether it is usable.

    Args:
        dataset: The dataset to check.
        decode: Fully decode every image (slower, catches truncated files).
        workers: Threads used to open files.

    Returns:
        A report; ``report.usable`` is False when there are no images or fewer than two classes.
    """
    report = DataReport(dataset, dataset.class_counts(), dataset.split_counts())
    report.unreadable.extend(dataset.problems)
    paths = dataset.frame["path"].tolist()
    if decode and paths:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(lambda p: probe_image(Path(p)), paths))
        report.unreadable.extend((p, r) for p, r in zip(paths, reasons, strict=True) if r)
    bad = {p for p, _ in report.unreadable}
    readable = [p for p in paths if p not in bad]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = list(pool.map(_sha1, readable))
        sizes = list(pool.map(_suspicious_size, readable))
    first_seen: dict[str, str] = {}
    for path, digest, size_note in zip(readable, digests, sizes, strict=True):
        if size_note:
            report.suspicious.append((path, size_note))
        if digest in first_seen:
            report.suspicious.append((path, f"byte-identical to {Path(first_seen[digest]).name}"))
        else:
            first_seen[digest] = path
    usable_counts = dataset.frame[~dataset.frame["path"].isin(bad)]["label"].value_counts()
    if usable_counts.sum() == 0:
        report.errors.append(f"No readable images in {dataset.root}.")
    elif len(usable_counts) < 2:
        report.errors.append(
            f"Only one class ({usable_counts.index[0]}) found; a classifier needs at least two class folders."
        )
    for label, count in usable_counts.items():
        if count < MIN_IMAGES_PER_CLASS:
            report.errors.append(
                f"Class {label} has {count} readable image(s); at least {MIN_IMAGES_PER_CLASS} needed."
            )
    return report


def assign_splits(dataset: Dataset, val: float = 0.15, test: float = 0.15, seed: int = 42) -> Dataset:
    """Give a split-less dataset a stratified (group-aware when groups exist) train/val/test split."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    frame = dataset.frame.copy()
    if frame["group"].notna().any():
        groups = frame["group"].fillna(frame["path"])
        outer = GroupShuffleSplit(n_splits=1, test_size=test, random_state=seed)
        rest_idx, test_idx = next(outer.split(frame, groups=groups))
        inner = GroupShuffleSplit(n_splits=1, test_size=val / (1 - test), random_state=seed)
        tr, va = next(inner.split(rest_idx, groups=groups.iloc[rest_idx]))
        train_idx, val_idx = rest_idx[tr], rest_idx[va]
    else:
        labels = frame["label"]
        stratify = labels if labels.value_counts().min() >= 3 else None
        rest_idx, test_idx = train_test_split(
            np.arange(len(frame)), test_size=test, random_state=seed, stratify=stratify
        )
        stratify_rest = labels.iloc[rest_idx] if stratify is not None else None
        train_idx, val_idx = train_test_split(
            rest_idx, test_size=val / (1 - test), random_state=seed, stratify=stratify_rest
        )
    frame["split"] = None
    frame.loc[train_idx, "split"] = "train"
    frame.loc[val_idx, "split"] = "val"
    frame.loc[test_idx, "split"] = "test"
    return Dataset(dataset.root, frame, dataset.source, dataset.manifest, dataset.problems, dataset.excluded)


def load_images(paths: Sequence[str], size: int, workers: int = 4) -> np.ndarray:
    """Decode and resize images in parallel into a ``uint8`` array of shape (N, size, size, 3)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda p: load_array(p, size), paths))
    return np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)


def label_indices(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Map labels to indices in ``classes``; labels not in ``classes`` raise a DatasetError."""
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - lookup.keys())
    if unknown:
        raise DatasetError(f"Labels {unknown} are not among the model's classes {list(classes)}.")
    return np.array([lookup[label] for label in labels], dtype=np.int32)
