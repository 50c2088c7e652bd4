"""Dataset discovery in the common layouts, checking, splitting and the tf.data pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hemato.data.datasets import (
    DatasetError,
    assign_splits,
    check_dataset,
    discover_dataset,
    label_indices,
    looks_like_dataset,
)
from tests.conftest import PBC


def _copy_images(src: Path, dst: Path, per_class: int) -> None:
    for class_dir in sorted(src.iterdir()):
        if class_dir.is_dir():
            (dst / class_dir.name).mkdir(parents=True, exist_ok=True)
            for img in sorted(class_dir.glob("*.jpg"))[:per_class]:
                shutil.copy(img, dst / class_dir.name / img.name)


def test_pbc_mini_class_folders(pbc_mini: Path) -> None:
    ds = discover_dataset(pbc_mini)
    assert ds.source == "class folders"
    assert ds.classes == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert ds.class_counts() == dict.fromkeys(ds.classes, 20)
    assert ds.splits == []


def test_split_folders_any_case_under_wrappers(pbc_mini: Path, tmp_path: Path) -> None:
    root = tmp_path / "dataset2-master" / "images"
    _copy_images(pbc_mini, root / "TRAIN", 3)
    for class_dir in (root / "TRAIN").iterdir():
        (root / "test" / class_dir.name.lower()).mkdir(parents=True)
        shutil.copy(next(class_dir.iterdir()), root / "test" / class_dir.name.lower() / "x.jpg")
    ds = discover_dataset(tmp_path)
    assert ds.source == "split folders"
    assert ds.splits == ["train", "test"]
    assert ds.classes == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert ds.split_counts().loc["MONOCYTE"].tolist() == [3, 1]
    assert len(ds.subset("test")) == 4


def test_manifest_with_excluded_rows_and_groups(pbc_mini: Path, tmp_path: Path) -> None:
    files = sorted(pbc_mini.glob("*/*.jpg"))[:6]
    lines = ["path,label,split,near_dup_group"]
    for i, f in enumerate(files):
        split = ["train", "val", "excluded"][i % 3]
        lines.append(f"{f.parent.name}/{f.name},{f.parent.name.lower()},{split},g{i // 2}")
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(lines) + "\nMISSING/nothing.jpg,EOSINOPHIL,train,g9\n")
    ds = discover_dataset(pbc_mini, split_csv=manifest)
    assert ds.source == "manifest"
    assert len(ds) == 4 and ds.excluded == 2 and ds.n_files == 6
    assert set(ds.frame["label"]) == {"EOSINOPHIL"}
    assert ds.frame["group"].notna().all()
    assert ds.problems == (("MISSING/nothing.jpg", "listed in the manifest but missing on disk"),)


def test_canonical_pbc_split_csv() -> None:
    ds = discover_dataset(PBC)
    assert ds.manifest is not None and ds.manifest.name == "splits_seed42.csv"
    assert ds.n_files == 9080 and ds.excluded == 9
    assert {s: len(ds.subset(s)) for s in ds.splits} == {"train": 6351, "val": 1360, "test": 1360}


def test_missing_and_empty_folders_raise(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover_dataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "A").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No images found"):
        discover_dataset(tmp_path / "empty")
    assert not looks_like_dataset(tmp_path / "empty")


def test_check_reports_bad_files_and_duplicates(pbc_mini: Path, tmp_path: Path) -> None:
    _copy_images(pbc_mini, tmp_path, 3)
    eos = tmp_path / "EOSINOPHIL"
    (eos / "notes.jpg").write_text("not a picture")
    first = sorted(eos.glob("EO_*.jpg"))[0]
    (eos / "cut.jpg").write_bytes(first.read_bytes()[:2000])
    shutil.copy(first, tmp_path / "LYMPHOCYTE" / "copy.jpg")
    report = check_dataset(discover_dataset(tmp_path))
    reasons = {Path(p).name: r for p, r in report.unreadable}
    assert "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["cut.jpg"]
    assert any("byte-identical" in r for _, r in report.suspicious)
    assert report.usable


def test_one_class_dataset_is_unusable(pbc_mini: Path, tmp_path: Path) -> None:
    shutil.copytree(pbc_mini / "MONOCYTE", tmp_path / "only" / "MONOCYTE")
    report = check_dataset(discover_dataset(tmp_path / "only"))
    assert not report.usable
    assert "Only one class" in report.errors[0]


def test_assign_splits_is_stratified_and_reproducible(pbc_mini: Path) -> None:
    ds = discover_dataset(pbc_mini)
    a, b = assign_splits(ds, seed=1), assign_splits(ds, seed=1)
    assert a.frame["split"].tolist() == b.frame["split"].tolist()
    counts = a.split_counts()
    assert (counts["train"] >= 12).all() and (counts["test"] >= 2).all()


def test_label_indices_rejects_unknown() -> None:
    assert label_indices(["B", "A"], ["A", "B"]).tolist() == [1, 0]
    with pytest.raises(DatasetError, match="BASOPHIL"):
        label_indices(["BASOPHIL"], ["A", "B"])
