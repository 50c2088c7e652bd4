"""Classification metrics: accuracy, macro-F1, balanced accuracy, per-class scores, confusion and calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

N_BINS = 15


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """Equal-width confidence bins (lo, hi] with their count, mean confidence and accuracy (None when empty)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds lo < c <= hi; a confidence of exactly 0 goes to the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for i in range(n_bins):
        mask = index == i
        count = int(mask.sum())
        bins.append(
            {
                "lo": float(edges[i]),
                "hi": float(edges[i + 1]),
                "count": count,
                "confidence": float(confidence[mask].mean()) if count else None,
                "accuracy": float(correct[mask].mean()) if count else None,
            }
        )
    return bins


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE: the count-weighted mean gap between accuracy and confidence over equal-width bins."""
    total = len(confidence)
    if total == 0:
        return 0.0
    gaps = [
        b["count"] / total * abs(b["accuracy"] - b["confidence"])
        for b in reliability_bins(confidence, correct, n_bins)
        if b["count"]
    ]
    return float(sum(gaps))


def _confidence_summary(confidence: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    edges = np.linspace(0.0, 1.0, 21)
    summary: dict[str, Any] = {"edges": edges.round(4).tolist()}
    for name, mask in (("correct", correct), ("wrong", ~correct)):
        values = confidence[mask]
        summary[name] = {
            "n": int(mask.sum()),
            "mean": float(values.mean()) if len(values) else None,
            "hist": np.histogram(values, bins=edges)[0].astype(int).tolist(),
        }
    return summary


def compute_metrics(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, balanced accuracy, per-class scores, confusion matrix and calibration.

    Args:
        y_true: True class indices into ``classes`` (or the labels themselves).
        probs: Predicted probabilities (N, len(classes)).
        classes: Class names in the model's output order.

    Returns:
        ``n``, ``accuracy``, ``macro_f1`` (over the classes present in truth or predictions, as scikit-learn),
        ``balanced_accuracy`` (mean recall over the classes present), ``per_class`` (label → precision, recall,
        f1, support), ``confusion_matrix`` (``labels``, ``matrix`` with rows = truth), ``ece`` (15 bins),
        ``reliability`` bins and ``confidence`` (correct vs wrong).
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    classes = list(classes)
    y = np.asarray(y_true)
    if y.dtype.kind in "USO":
        lookup = {c: i for i, c in enumerate(classes)}
        y = np.array([lookup[str(label)] for label in y], dtype=int)
    y = y.astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y), len(classes)):
        raise ValueError(f"probs must have shape ({len(y)}, {len(classes)}), got {probs.shape}.")
    n = len(y)
    if n == 0:
        raise ValueError("There are no predictions to score: the evaluated set is empty.")
    pred = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    correct = pred == y
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    present = sorted(set(y.tolist()))
    return {
        "n": n,
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "balanced_accuracy": float(np.mean([recall[i] for i in present])),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(classes)
        },
        "confusion_matrix": {
            "labels": classes,
            "matrix": confusion_matrix(y, pred, labels=labels).astype(int).tolist(),
        },
        "ece": expected_calibration_error(confidence, correct),
        "reliability": reliability_bins(confidence, correct),
        "confidence": _confidence_summary(confidence, correct),
    }
