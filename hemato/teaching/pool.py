"""The model's verdicts over the quiz pool (challenge mode, the atlas' hard examples): an evaluation job.

The pool is a class-balanced cut of the quiz images (:data:`hemato.teaching.quiz.CHALLENGE_POOL_SIZE`); it is
scored by :func:`hemato.vision.evaluate.evaluate_dataset` in the ``quiz_pool`` job (heavy, on the job worker),
and the result is cached under the evaluation key of (model version, pool, ``quiz pool``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hemato import jobs
from hemato.config import get_settings
from hemato.data.datasets import Dataset, discover_dataset
from hemato.teaching.quiz import CHALLENGE_POOL_SIZE, quiz_pool
from hemato.vision.evaluate import evaluate_dataset, evaluation_key, load_result, result_path
from hemato.vision.models import read_card

POOL_SPLIT = "quiz pool"
COLUMNS = ["path", "label", "pred", "conf", "true_prob"]


def pool_dataset(dataset: Dataset, classes: list[str]) -> Dataset:
    """The quiz pool of ``dataset`` restricted to the model's ``classes`` (empty when none is known)."""
    paths = {q.path for q in quiz_pool(dataset.frame, CHALLENGE_POOL_SIZE) if q.label in classes}
    frame = dataset.frame[dataset.frame["path"].isin(paths)].reset_index(drop=True)
    return Dataset(dataset.root, frame, dataset.source, dataset.manifest)


def pool_key(model_dir: Path, dataset: Dataset) -> str:
    """The cache (and job) key of one model version's verdicts on ``dataset``'s pool."""
    return evaluation_key(model_dir, pool_dataset(dataset, read_card(model_dir).classes), POOL_SPLIT)


def predictions_table(result: dict[str, Any]) -> pd.DataFrame:
    """An evaluation result as ``path, label, pred, conf, true_prob`` rows (what challenge mode and the atlas use)."""
    classes = result["classes"]
    rows = [
        {
            "path": r["path"],
            "label": r["label"],
            "pred": r["predicted"],
            "conf": r["confidence"],
            "true_prob": r["probs"][classes.index(r["label"])] if r["label"] in classes else float("nan"),
        }
        for r in result["rows"]
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def pool_predictions(model_dir: Path, dataset: Dataset, cache_dir: Path | None = None) -> pd.DataFrame | None:
    """The model's verdicts on the pool when already computed, else None."""
    result = load_result(cache_dir or get_settings().cache_dir, pool_key(model_dir, dataset))
    return predictions_table(result) if result is not None else None


@jobs.job("quiz_pool", heavy=True, label="The model's verdicts on the quiz images")
def pool_job(ctx: jobs.JobContext, model_dir: str, data_path: str, cache_dir: str) -> dict[str, Any]:
    """The ``quiz_pool`` job: evaluate the model on the quiz pool of the dataset at ``data_path``."""

    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, "images", "predicting")
        ctx.check_cancel()

    ctx.set_phase("loading the model and images")
    pool = pool_dataset(discover_dataset(data_path), read_card(Path(model_dir)).classes)
    result = evaluate_dataset(model_dir, pool, POOL_SPLIT, data_path, Path(cache_dir), progress)
    ctx.result_path = str(result_path(Path(cache_dir), result["key"]))
    return {"key": result["key"], "n": result["n"]}


def start_pool_predictions(
    model_dir: Path, data_path: Path, dataset: Dataset, cache_dir: Path | None = None
) -> jobs.Job:
    """Queue (or join) the ``quiz_pool`` job for one model version and dataset; return it."""
    cache_dir = cache_dir or get_settings().cache_dir
    key = pool_key(model_dir, dataset)
    params = {"model_dir": str(model_dir), "data_path": str(data_path), "cache_dir": str(cache_dir)}
    label = f"{Path(model_dir).name} goes through the quiz images"
    return jobs.submit("quiz_pool", params, key=key, label=label, force=load_result(cache_dir, key) is None)
