"""`python -m hemato data check` and `status` from a terminal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hemato.cli import main


def test_data_check_json_on_pbc_mini(pbc_mini: Path, capsys) -> None:
    assert main(["data", "check", str(pbc_mini), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == 80 and report["usable"] is True
    assert report["class_counts"] == {"EOSINOPHIL": 20, "LYMPHOCYTE": 20, "MONOCYTE": 20, "NEUTROPHIL": 20}


def test_data_check_prints_splits_and_bad_files(pbc_mini: Path, tmp_path: Path, capsys) -> None:
    for split in ("train", "test"):
        for cls in ("EOSINOPHIL", "MONOCYTE"):
            dst = tmp_path / split / cls
            dst.mkdir(parents=True)
            for img in sorted((pbc_mini / cls).glob("*.jpg"))[:2]:
                shutil.copy(img, dst / img.name)
    (tmp_path / "train" / "MONOCYTE" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Splits:" in out and "broken.png" in out and "OK: dataset is usable." in out


def test_data_check_fails_on_unusable_data(pbc_mini: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(pbc_mini / "LYMPHOCYTE", tmp_path / "LYMPHOCYTE")
    assert main(["data", "check", str(tmp_path), "--quick"]) == 1
    assert "Only one class" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "missing")]) == 2


def test_status_lists_dataset_and_weights(capsys) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "classes EOSINOPHIL, LYMPHOCYTE, MONOCYTE, NEUTROPHIL" in out
    assert "mobilenet_v2_1.0_224_imagenet.weights.h5" in out
