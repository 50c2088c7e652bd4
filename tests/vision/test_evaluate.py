"""Evaluation core: metrics against scikit-learn, ECE by hand, the CLI schema, skipped classes, cache and jobs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from hemato import jobs
from hemato.cli import main
from hemato.data.datasets import DatasetError, discover_dataset
from hemato.vision.evaluate import EvaluationRequest, evaluate_model, evaluation_job, predict_paths, start_evaluation
from hemato.vision.metrics import compute_metrics, expected_calibration_error, reliability_bins

CLASSES = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]


def _probs_for(pred: list[int], confidence: list[float], n_classes: int) -> np.ndarray:
    """Probability rows whose argmax is ``pred`` with that maximum; the rest spread evenly."""
    probs = np.zeros((len(pred), n_classes))
    for i, (k, c) in enumerate(zip(pred, confidence, strict=True)):
        probs[i] = (1 - c) / (n_classes - 1)
        probs[i, k] = c
    return probs


def test_metrics_match_scikit_learn() -> None:
    y_true = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3]
    y_pred = [0, 0, 1, 0, 1, 2, 1, 2, 2, 1, 2, 2, 3, 0, 3]
    rng = np.random.default_rng(1)
    probs = _probs_for(y_pred, rng.uniform(0.4, 0.99, len(y_pred)).tolist(), 4)

    m = compute_metrics(np.array(y_true), probs, CLASSES)

    assert m["n"] == 15
    assert m["accuracy"] == pytest.approx(np.mean(np.array(y_true) == np.array(y_pred)))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2, 3])
    for i, label in enumerate(CLASSES):
        row = m["per_class"][label]
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == support[i]
    assert m["confusion_matrix"]["labels"] == CLASSES
    assert m["confusion_matrix"]["matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert m["confidence"]["correct"]["n"] + m["confidence"]["wrong"]["n"] == 15
    assert m["confidence"]["wrong"]["n"] == 4 and sum(m["confidence"]["wrong"]["hist"]) == 4
    json.dumps(m)  # plain JSON types only


def test_metrics_accept_labels_and_reject_bad_shapes() -> None:
    probs = _probs_for([0, 1, 1], [0.9, 0.8, 0.7], 2)
    m = compute_metrics(np.array(["A", "B", "A"]), probs, ["A", "B"])
    assert m["confusion_matrix"]["matrix"] == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="shape"):
        compute_metrics([0, 1], probs, ["A", "B"])


def test_ece_matches_hand_computation() -> None:
    # Bins are 1/15 wide. 0.95 falls in (0.933, 1]: accuracy 1/2, mean confidence 0.95 → gap 0.45, weight 2/5.
    # 0.55 falls in (0.533, 0.6]: accuracy 1, confidence 0.55 → gap 0.45, weight 2/5.
    # 0.30 falls in (0.267, 0.333]: accuracy 0, confidence 0.30 → gap 0.30, weight 1/5.
    confidence = np.array([0.95, 0.95, 0.55, 0.55, 0.30])
    correct = np.array([True, False, True, True, False])
    expected = 2 / 5 * 0.45 + 2 / 5 * 0.45 + 1 / 5 * 0.30
    assert expected_calibration_error(confidence, correct) == pytest.approx(expected)

    bins = reliability_bins(confidence, correct)
    assert len(bins) == 15
    assert sum(b["count"] for b in bins) == 5
    assert bins[14]["count"] == 2 and bins[14]["accuracy"] == pytest.approx(0.5)
    assert bins[0]["count"] == 0 and bins[0]["accuracy"] is None


def test_ece_of_a_perfectly_calibrated_set_is_zero() -> None:
    confidence = np.full(10, 0.8)
    correct = np.array([True] * 8 + [False] * 2)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)


def test_predict_paths_gives_probabilities(tiny_model_dir: Path, pbc_mini: Path, tmp_path: Path) -> None:
    from hemato.vision.models import load_model

    model, card = load_model(tiny_model_dir)
    paths = discover_dataset(pbc_mini).frame["path"].tolist()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    seen = []
    probs, unreadable = predict_paths(
        model, [*paths, str(broken)], card.input_size, progress=lambda d, t: seen.append((d, t)), batch_size=32
    )
    assert probs.shape == (81, 4)
    assert np.allclose(probs[:80].sum(axis=1), 1.0, atol=1e-4) and np.isnan(probs[80]).all()
    assert list(unreadable) == [str(broken)]
    assert seen[-1] == (81, 81) and len(seen) == 3


def test_cli_json_schema_on_pbc_mini(tiny_model_dir: Path, pbc_mini: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data", str(pbc_mini), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 80
    assert 0.0 <= out["accuracy"] <= 1.0 and 0.0 <= out["macro_f1"] <= 1.0
    assert out["accuracy"] > 0.5  # a genuinely trained model, scored on its own training images
    assert set(out["per_class"]) == set(CLASSES)
    for stats in out["per_class"].values():
        assert set(stats) >= {"precision", "recall", "f1", "support"}
    assert sum(s["support"] for s in out["per_class"].values()) == 80
    assert out["confusion_matrix"]["labels"] == CLASSES
    assert np.array(out["confusion_matrix"]["matrix"]).sum() == 80
    assert 0.0 <= out["ece"] <= 1.0
    assert out["skipped"] == {}
    assert "rows" not in out

    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(pbc_mini)]) == 0
    text = capsys.readouterr().out
    assert "accuracy=" in text and "Confusion matrix" in text and "cached result" in text


def test_cli_reports_a_missing_split(tiny_model_dir: Path, pbc_mini: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data", str(pbc_mini), "--split", "val"])
    assert code == 2
    assert "Split 'val' not found" in capsys.readouterr().err


@pytest.fixture
def data_with_basophils(tmp_path: Path, pbc_mini: Path) -> Path:
    """pbc_mini's four classes (5 images each) plus a BASOPHIL folder the model has never seen."""
    root = tmp_path / "with_basophils"
    for class_dir in sorted(p for p in pbc_mini.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for img in sorted(class_dir.glob("*.jpg"))[:5]:
            shutil.copy(img, root / class_dir.name / img.name)
    (root / "BASOPHIL").mkdir()
    for i, img in enumerate(sorted((pbc_mini / "MONOCYTE").glob("*.jpg"))[:3]):
        shutil.copy(img, root / "BASOPHIL" / f"baso_{i}.jpg")
    return root


def test_unknown_classes_are_skipped_not_fatal(tiny_model_dir: Path, data_with_basophils: Path) -> None:
    result = evaluate_model(tiny_model_dir, data_with_basophils)
    assert result["skipped"] == {"BASOPHIL": 3}
    assert result["n_skipped"] == 3
    assert result["n"] == 20
    assert len(result["rows"]) == 20
    assert {r["label"] for r in result["rows"]} == set(CLASSES)
    assert result["data"]["split"] is None


def test_unreadable_image_is_listed_not_fatal(tiny_model_dir: Path, data_with_basophils: Path) -> None:
    (data_with_basophils / "LYMPHOCYTE" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    result = evaluate_model(tiny_model_dir, data_with_basophils)
    assert [Path(u["path"]).name for u in result["unreadable"]] == ["broken.jpg"]
    assert result["n"] == 20


def test_only_unknown_labels_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path, pbc_mini: Path) -> None:
    for name in ("BASOPHIL", "PLATELET"):
        (tmp_path / "odd" / name).mkdir(parents=True)
        for img in sorted((pbc_mini / "MONOCYTE").glob("*.jpg"))[:2]:
            shutil.copy(img, tmp_path / "odd" / name / img.name)
    with pytest.raises(ValueError, match="has a label this model knows"):
        evaluate_model(tiny_model_dir, tmp_path / "odd")


def test_cache_hit_and_invalidation(tiny_model_dir: Path, data_with_basophils: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model_copy"
    shutil.copytree(tiny_model_dir, model_dir)
    cache = tmp_path / "cache"

    first = evaluate_model(model_dir, data_with_basophils, cache_dir=cache)
    second = evaluate_model(model_dir, data_with_basophils, cache_dir=cache)
    assert first["cached"] is False and second["cached"] is True
    assert second["accuracy"] == first["accuracy"] and second["rows"] == first["rows"]

    model_file = model_dir / "model.keras"
    stat = model_file.stat()
    os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert evaluate_model(model_dir, data_with_basophils, cache_dir=cache)["cached"] is False

    (data_with_basophils / "NEUTROPHIL" / next((data_with_basophils / "NEUTROPHIL").iterdir()).name).unlink()
    changed = evaluate_model(model_dir, data_with_basophils, cache_dir=cache)
    assert changed["cached"] is False and changed["n"] == 19


def test_evaluation_job_runs_once_on_the_worker_and_is_shared(tiny_model_dir: Path, data_with_basophils: Path) -> None:
    from hemato.config import get_settings

    cache = get_settings().cache_dir
    request = EvaluationRequest(tiny_model_dir, data_with_basophils)
    job = start_evaluation(request, cache)
    assert job.kind == "evaluate" and job.queue == "heavy" and job.state in ("queued", "running")
    assert start_evaluation(request, cache).id == job.id
    done = jobs.wait(job.id, timeout=300)
    assert done.state == "done", done.error
    assert (done.done, done.total, done.unit) == (20, 20, "images")
    stored = json.loads(Path(done.result_path).read_text())
    assert stored["n"] == 20 and stored["skipped"] == {"BASOPHIL": 3} and done.result["key"] == stored["key"]
    assert evaluate_model(tiny_model_dir, data_with_basophils, cache_dir=cache)["cached"] is True
    assert start_evaluation(request, cache).id == job.id, "a finished evaluation with its result is not redone"
    assert evaluation_job(stored["key"]).id == job.id
    Path(done.result_path).unlink()
    assert start_evaluation(request, cache).id != job.id, "a result that went missing is computed again"


def test_evaluation_job_reports_failure(tiny_model_dir: Path, pbc_mini: Path, tmp_path: Path) -> None:
    bad_model = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad_model)
    (bad_model / "model.keras").write_bytes(b"not a keras file")
    job = jobs.wait(start_evaluation(EvaluationRequest(bad_model, pbc_mini), tmp_path / "cache").id, timeout=300)
    assert job.state == "failed"
    assert "could not be loaded" in job.error and "Traceback" not in job.error


def test_missing_split_raises_dataset_error(tiny_model_dir: Path, pbc_mini: Path) -> None:
    with pytest.raises(DatasetError, match="Split 'test' not found"):
        evaluate_model(tiny_model_dir, pbc_mini, split="test")
