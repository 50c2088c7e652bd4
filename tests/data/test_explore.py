"""Explorer core: statistics cache, thumbnails, duplicate finder (incl. the real PBC duplicates), embeddings, jobs."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hemato import jobs
from hemato.data.datasets import EXCLUDED_SPLIT, discover_dataset
from hemato.data.explore import (
    build_stats,
    class_summary,
    duplicates_table,
    files_key,
    find_duplicates,
    load_stats,
    mean_histograms,
    save_frame,
    scan_frame,
    stats_path,
    thumbnail_path,
)
from tests.conftest import PBC


@pytest.fixture
def dup_dataset(tmp_path: Path, pbc_mini: Path) -> Path:
    """Three classes of real cells plus a byte copy in another split and a re-encoded copy in another class."""
    root = tmp_path / "cells"
    for split in ("train", "test"):
        for cls in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"):
            (root / split / cls).mkdir(parents=True)
    for cls in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"):
        images = sorted((pbc_mini / cls).glob("*.jpg"))[:4]
        for img in images[:3]:
            shutil.copy(img, root / "train" / cls / img.name)
        shutil.copy(images[3], root / "test" / cls / images[3].name)
    source = sorted((root / "train" / "EOSINOPHIL").glob("*.jpg"))[0]
    shutil.copy(source, root / "test" / "EOSINOPHIL" / "copy_of_source.jpg")
    buffer = io.BytesIO()
    Image.open(source).save(buffer, format="JPEG", quality=70)
    (root / "train" / "MONOCYTE" / "reencoded.jpg").write_bytes(buffer.getvalue())
    return root


def test_stats_are_built_once_and_reloaded(pbc_mini: Path, isolated_home: Path) -> None:
    frame = scan_frame(discover_dataset(pbc_mini))
    cache = isolated_home / "cache"
    assert load_stats(frame, cache) is None
    seen = []
    stats = build_stats(frame, cache, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (80, 80)
    again = load_stats(frame, cache)
    assert again is not None
    pd.testing.assert_frame_equal(stats.table, again.table)
    table = stats.table
    assert len(table) == 80 and (table["error"] == "").all()
    assert table["width"].between(300, 400).all()
    assert table[["mean_r", "mean_g", "mean_b"]].stack().between(0, 255).all()
    assert (table["contrast"] > 0).all()
    assert stats.hist.shape == (80, 3, 32)
    np.testing.assert_allclose(stats.hist.sum(axis=2), 1.0, rtol=1e-5)
    summary = class_summary(stats)
    assert list(summary.index) == ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
    assert (summary["images"] == 20).all()
    assert set(mean_histograms(stats)) == set(summary.index)


def test_mean_colour_matches_numpy(pbc_mini: Path, isolated_home: Path) -> None:
    frame = scan_frame(discover_dataset(pbc_mini)).head(3)
    stats = build_stats(frame, isolated_home / "cache")
    row = stats.table.iloc[0]
    arr = np.asarray(Image.open(row["path"]).convert("RGB"), dtype=np.float64)
    np.testing.assert_allclose([row["mean_r"], row["mean_g"], row["mean_b"]], arr.mean(axis=(0, 1)), atol=0.01)
    grey = np.asarray(Image.open(row["path"]).convert("L"), dtype=np.float64)
    assert row["brightness"] == pytest.approx(grey.mean(), abs=0.01)
    assert row["contrast"] == pytest.approx(grey.std(), abs=0.01)


def test_unreadable_file_is_reported_not_fatal(tmp_path: Path, pbc_mini: Path, isolated_home: Path) -> None:
    for cls in ("A", "B"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for img in sorted((pbc_mini / "MONOCYTE").glob("*.jpg"))[:2]:
            shutil.copy(img, tmp_path / "d" / cls / img.name)
    (tmp_path / "d" / "A" / "broken.jpg").write_bytes(b"not a jpeg")
    stats = build_stats(scan_frame(discover_dataset(tmp_path / "d")), isolated_home / "cache")
    broken = stats.table[stats.table["path"].str.endswith("broken.jpg")].iloc[0]
    assert "broken.jpg" in broken["error"]
    assert class_summary(stats)["images"].sum() == 4


def test_thumbnails_are_cached_on_disk_and_invalidated_by_change(tmp_path: Path, pbc_mini: Path) -> None:
    image = tmp_path / "cell.jpg"
    shutil.copy(next((pbc_mini / "LYMPHOCYTE").glob("*.jpg")), image)
    first = thumbnail_path(str(image), tmp_path / "cache", size=64)
    assert first.is_file() and max(Image.open(first).size) == 64
    assert thumbnail_path(str(image), tmp_path / "cache", size=64) == first
    Image.open(image).rotate(90).save(image, quality=80)
    assert thumbnail_path(str(image), tmp_path / "cache", size=64) != first


def test_duplicate_finder_finds_byte_and_reencoded_copies(dup_dataset: Path, isolated_home: Path) -> None:
    ds = discover_dataset(dup_dataset)
    stats = build_stats(scan_frame(ds), isolated_home / "cache")
    groups = find_duplicates(stats, max_distance=4)
    assert len(groups) == 1, duplicates_table(groups).to_string()
    group = groups[0]
    names = sorted(Path(p).name for p in group.paths)
    assert len(names) == 3 and "copy_of_source.jpg" in names and "reencoded.jpg" in names
    assert not group.identical
    assert group.crosses_splits and group.crosses_classes
    exact = find_duplicates(stats, max_distance=0)
    assert len(exact) == 1 and exact[0].identical and len(exact[0].paths) == 2
    table = duplicates_table(groups, ds.root)
    assert table.loc[0, "crosses splits"] and "train/MONOCYTE/reencoded.jpg" in table.loc[0, "files"]


def test_scan_frame_adds_rows_the_manifest_excludes(tmp_path: Path, pbc_mini: Path) -> None:
    images = sorted((pbc_mini / "NEUTROPHIL").glob("*.jpg"))[:4]
    for img in images:
        shutil.copy(img, tmp_path / img.name)
    rows = [f"{img.name},NEUTROPHIL,train" for img in images[:3]] + [f"{images[3].name},NEUTROPHIL,excluded"]
    (tmp_path / "split.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    ds = discover_dataset(tmp_path)
    frame = scan_frame(ds)
    assert len(ds) == 3 and len(frame) == 4
    assert frame["split"].tolist().count(EXCLUDED_SPLIT) == 1


def _sha256(paths: list[Path]) -> dict[str, list[Path]]:
    out = subprocess.run(["sha256sum", *map(str, paths)], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[Path]] = {}
    for line in out.splitlines():
        digest, path = line.split(maxsplit=1)
        groups.setdefault(digest, []).append(Path(path))
    return groups


@pytest.mark.skipif(not PBC.is_dir(), reason="needs ../shared/data/pbc")
def test_real_pbc_cross_class_duplicate_is_found(isolated_home: Path) -> None:
    eos, neu = PBC / "EOSINOPHIL" / "EO_225902.jpg", PBC / "NEUTROPHIL" / "BNE_191112.jpg"
    assert len(_sha256([eos, neu])) == 1, "the known cross-class pair should be byte-identical"
    ds = discover_dataset(PBC)
    frame = scan_frame(ds)
    assert len(frame) == 9080 and len(ds) == 9071
    # Hash only the known duplicates plus a slice of ordinary images, to keep the test fast.
    excluded = frame[frame["split"] == EXCLUDED_SPLIT]
    assert len(excluded) == 9
    originals = frame[frame["path"].isin([str(PBC / "EOSINOPHIL" / n) for n in ("EO_220125.jpg", "EO_621854.jpg")])]
    subset = pd.concat([excluded, originals, frame[frame["split"] == "test"].head(60)]).drop_duplicates("path")
    stats = build_stats(subset, isolated_home / "cache")
    groups = find_duplicates(stats, max_distance=0)
    cross = [g for g in groups if g.crosses_classes]
    assert len(cross) == 1
    assert sorted(Path(p).name for p in cross[0].paths) == ["BNE_191112.jpg", "EO_225902.jpg"]
    assert cross[0].identical and cross[0].n_excluded == 2
    assert len(groups) == 3 and all(g.identical for g in groups)


def test_files_key_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"1")
    key = files_key([str(path)])
    path.write_bytes(b"22")
    assert files_key([str(path)]) != key


def test_statistics_job_measures_a_saved_frame(
    pbc_mini: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEMATO_WORKER", "external")  # run the job in this process
    cache = isolated_home / "cache"
    frame = scan_frame(discover_dataset(pbc_mini))
    key = files_key(frame["path"].tolist())
    params = {"frame_path": str(save_frame(frame, cache, key)), "cache_dir": str(cache)}
    job = jobs.submit("explore_stats", params, key=key)
    jobs.run_job(job.id)
    done = jobs.get(job.id)
    assert done.state == "done" and (done.done, done.total, done.unit) == (80, 80, "images")
    assert done.result["key"] == key and done.result_path == str(stats_path(cache, key))
    assert load_stats(frame, cache) is not None

    missing = jobs.submit("explore_stats", {**params, "frame_path": str(cache / "gone.parquet")}, key="gone")
    jobs.run_job(missing.id)
    failed = jobs.get(missing.id)
    assert failed.state == "failed" and "gone.parquet" in failed.error
