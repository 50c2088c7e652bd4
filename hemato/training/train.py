"""Two-phase transfer learning (or training from scratch) writing everything to a run folder.

Phase 1 trains the head on cached backbone features (seconds per epoch). Phase 2 optionally fine-tunes
the backbone's top layers on augmented images at a lower learning rate. History, batch-level curve points and
the best checkpoint go to the run folder as they happen, so a page can draw them and a crash never loses the
best model so far; progress and stop requests go through a :class:`Reporter` (the job's context when the
run is a job of :mod:`hemato.jobs`).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hemato.config import get_settings
from hemato.data.datasets import Dataset, DatasetError, assign_splits, discover_dataset, label_indices, load_images
from hemato.vision.augment import PRESETS, make_augmenter
from hemato.vision.features import cached_features, extract_features
from hemato.vision.models import (
    MODEL_FILE,
    ModelCard,
    build_model,
    compiled_forward,
    get_backbone,
    register_custom_layers,
    save_model,
    set_trainable,
    software_versions,
    train_from_scratch,
)

MIN_TRAIN_PER_CLASS = 5
MAX_PRELOAD_BYTES = 4 * 1024**3
HISTORY_FILE = "history.csv"
BATCHES_FILE = "batches.csv"
CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.keras"
HISTORY_COLUMNS = ["phase", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]


class StopRequested(Exception):
    """The user asked the run to stop."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` and in the model card)."""

    data: str
    backbone: str = "mobilenet_v2"
    split_csv: str | None = None
    input_size: int | None = None
    epochs: int = 30
    fine_tune_epochs: int = 3
    fine_tune_layers: int = 47
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 3e-4
    augment: str = "light"
    class_weighting: bool = True
    patience: int = 4
    dropout: float = 0.2
    seed: int = 42
    weights: str | None = "imagenet"
    max_per_class: int | None = None
    out: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Input size, defaulting to the backbone's."""
        return self.input_size or get_backbone(self.backbone).default_size

    @property
    def uses_feature_cache(self) -> bool:
        """Phase 1 on cached features needs a pretrained, frozen backbone."""
        return self.backbone != "small_cnn" and self.weights == "imagenet"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class PreparedData:
    """Train/val/test rows with their label indices."""

    dataset: Dataset
    classes: list[str]
    train: Dataset
    val: Dataset
    test: Dataset | None


class Reporter(Protocol):
    """Where a run reports progress and learns that it should stop (:class:`hemato.jobs.JobContext` is one)."""

    def progress(
        self, done: float, total: float | None = None, unit: str | None = None, phase: str | None = None
    ) -> None:
        """Record ``done`` of ``total`` ``unit`` in ``phase``."""

    def set_phase(self, phase: str) -> None:
        """Say what the run is doing now."""

    def cancelled(self) -> bool:
        """True once the user asked the run to stop."""


class _Silent:
    """The reporter of a run without a job (tests, benchmarks): reports nowhere, never stops."""

    def progress(
        self, done: float, total: float | None = None, unit: str | None = None, phase: str | None = None
    ) -> None:
        """Ignore progress."""

    def set_phase(self, phase: str) -> None:
        """Ignore the phase."""

    def cancelled(self) -> bool:
        """Never asked to stop."""
        return False


class RunWriter:
    """Writes a run's history and batch log, reports progress; raises :class:`StopRequested` when asked to stop."""

    def __init__(self, run_dir: Path, reporter: Reporter | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.reporter: Reporter = reporter or _Silent()

    def append(self, name: str, columns: list[str], row: dict[str, Any]) -> None:
        """Append a row to a CSV log in the run folder (header on first write)."""
        path = self.run_dir / name
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def stopping(self) -> bool:
        """True once the user asked the run to stop."""
        return self.reporter.cancelled()

    def check_stop(self) -> None:
        """Raise StopRequested once the user asked the run to stop."""
        if self.stopping():
            raise StopRequested


def prepare_data(config: TrainConfig) -> PreparedData:
    """Load, check and split the data; refuse datasets that cannot train a classifier.

    Raises:
        DatasetError: Fewer than two classes, too few images in a class, or unreadable data.
    """
    dataset = discover_dataset(config.data, config.split_csv)
    if dataset.frame["label"].nunique() < 2:
        found = ", ".join(dataset.classes) or "none"
        raise DatasetError(f"Only one class ({found}) found; a classifier needs at least two class folders.")
    if config.max_per_class:
        frame = dataset.frame.groupby("label", group_keys=False).head(config.max_per_class)
        dataset = Dataset(dataset.root, frame.reset_index(drop=True), dataset.source, dataset.manifest)
    splits = set(dataset.splits)
    if "train" not in splits:
        dataset = assign_splits(dataset, seed=config.seed)
    elif "val" not in splits:
        dataset = _carve_validation(dataset, config.seed)
    train = dataset.subset("train")
    classes = train.classes
    counts = train.class_counts()
    too_few = {c: n for c, n in counts.items() if n < MIN_TRAIN_PER_CLASS}
    if len(classes) < 2:
        raise DatasetError("The training split has fewer than two classes; add images of another class.")
    if too_few:
        detail = ", ".join(f"{c}: {n}" for c, n in too_few.items())
        raise DatasetError(f"Too few training images ({detail}); each class needs at least {MIN_TRAIN_PER_CLASS}.")
    known = set(classes)
    val = _known_only(dataset.subset("val"), known)
    test = _known_only(dataset.subset("test"), known) if "test" in dataset.splits else None
    if len(val) == 0:
        raise DatasetError("The validation split is empty; add images or let HematoVision split the data.")
    return PreparedData(dataset, classes, train, val, test)


def _carve_validation(dataset: Dataset, seed: int, fraction: float = 0.15) -> Dataset:
    """Move a stratified ``fraction`` of the train split to a new val split (for train/test-only layouts)."""
    from sklearn.model_selection import train_test_split

    frame = dataset.frame.copy()
    train_idx = frame.index[frame["split"] == "train"]
    labels = frame.loc[train_idx, "label"]
    stratify = labels if labels.value_counts().min() >= 2 else None
    _, val_idx = train_test_split(train_idx, test_size=fraction, random_state=seed, stratify=stratify)
    frame.loc[val_idx, "split"] = "val"
    return Dataset(dataset.root, frame, dataset.source, dataset.manifest)


def _known_only(ds: Dataset, known: set[str]) -> Dataset:
    frame = ds.frame[ds.frame["label"].isin(known)].reset_index(drop=True)
    return Dataset(ds.root, frame, ds.source, ds.manifest)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced class weights (n_samples / (n_classes * count)) for imbalanced data."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    counts[counts == 0] = 1.0
    return {i: float(len(labels) / (n_classes * c)) for i, c in enumerate(counts)}


class _ImageCache:
    """Decoded, resized images kept in memory once read (when they fit), so later epochs skip JPEG decoding."""

    def __init__(self, paths: list[str], size: int, keep: bool) -> None:
        self.size = size
        self.index = {p: i for i, p in enumerate(paths)}
        self.array = np.zeros((len(paths), size, size, 3), np.uint8) if keep else None
        self.filled = np.zeros(len(paths), bool)

    def load(self, chunk: Any) -> np.ndarray:
        """The uint8 images of ``chunk`` (decoded on first use, then served from memory)."""
        chunk = list(chunk)
        if self.array is None:
            return load_images(chunk, self.size)
        rows = np.array([self.index[p] for p in chunk])
        missing = rows[~self.filled[rows]]
        if len(missing):
            self.array[missing] = load_images([chunk[k] for k in np.flatnonzero(~self.filled[rows])], self.size)
            self.filled[missing] = True
        return self.array[rows]


def _progress_callback(writer: RunWriter, phase: str, epochs: int, steps: int, batch_size: int, n_images: int) -> Any:
    import keras

    class Progress(keras.callbacks.Callback):
        """Writes per-epoch history and batch-level curve points, reports images done; honours stop requests."""

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.done = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch
            self.epoch_start = time.time()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.done += 1
            if batch % max(1, steps // 20) == 0 or batch == steps - 1:
                logs = logs or {}
                writer.append(
                    BATCHES_FILE,
                    ["phase", "epoch", "step", "loss", "accuracy"],
                    {
                        "phase": phase,
                        "epoch": self.epoch + (batch + 1) / steps,
                        "step": self.done,
                        "loss": logs.get("loss"),
                        "accuracy": logs.get("accuracy"),
                    },
                )
            images = self.epoch * n_images + min((batch + 1) * batch_size, n_images)
            writer.reporter.progress(images, epochs * n_images, "images", f"{phase} · epoch {self.epoch + 1}/{epochs}")
            if writer.stopping():
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            row = {k: logs.get(k) for k in HISTORY_COLUMNS if k in logs}
            writer.append(
                HISTORY_FILE,
                HISTORY_COLUMNS,
                {**row, "phase": phase, "epoch": epoch + 1, "seconds": round(time.time() - self.epoch_start, 2)},
            )

    return Progress()


def _compile(model: Any, learning_rate: float, decay_steps: int = 0) -> None:
    """Adam with sparse cross-entropy; a cosine decay to zero over ``decay_steps`` when given."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps) if decay_steps else learning_rate
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _checkpoint_and_stop(run_dir: Path, patience: int) -> list[Any]:
    import keras

    return [
        keras.callbacks.ModelCheckpoint(
            str(run_dir / CHECKPOINT_FILE), monitor="val_accuracy", save_best_only=True, mode="max"
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True, start_from_epoch=0
        ),
    ]


def _train_head_on_features(
    config: TrainConfig, data: PreparedData, writer: RunWriter, cache: _ImageCache | None
) -> list[np.ndarray]:
    """Phase 1: fit the head on cached backbone features; return its ``predictions`` weights."""
    import keras

    settings = get_settings()
    paths = data.train.frame["path"].tolist() + data.val.frame["path"].tolist()

    def report(done: int, total: int) -> None:
        writer.reporter.progress(done, total, "images", "extracting features")
        writer.check_stop()

    features, _ = cached_features(
        config.backbone,
        config.size,
        paths,
        settings.cache_dir,
        settings.weights_dir,
        progress=report,
        loader=cache.load if cache else None,
    )
    n_train = len(data.train)
    x_train, x_val = features[:n_train], features[n_train:]
    y_train = label_indices(data.train.frame["label"].tolist(), data.classes)
    y_val = label_indices(data.val.frame["label"].tolist(), data.classes)

    inputs = keras.Input((features.shape[1],))
    x = keras.layers.Dropout(config.dropout)(inputs)
    outputs = keras.layers.Dense(len(data.classes), activation="softmax", name="predictions")(x)
    head = keras.Model(inputs, outputs)
    _compile(head, config.learning_rate)
    batch = min(config.batch_size * 4, 256)
    steps = math.ceil(n_train / batch)
    head.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=config.epochs,
        batch_size=batch,
        shuffle=True,
        class_weight=class_weights(y_train, len(data.classes)) if config.class_weighting else None,
        callbacks=[
            _progress_callback(writer, "head", config.epochs, steps, batch, n_train),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True),
        ],
        verbose=0,
    )
    return head.get_layer("predictions").get_weights()


def _image_pipeline(cache: _ImageCache, ds: Dataset, classes: list[str], config: TrainConfig, train: bool) -> Any:
    import tensorflow as tf

    paths = ds.frame["path"].tolist()
    labels = label_indices(ds.frame["label"].tolist(), classes)
    augmenter = augmenter_for(config.augment) if train else None
    rng = np.random.default_rng(config.seed)

    def load(indices: np.ndarray) -> np.ndarray:
        batch = cache.load([paths[i] for i in indices])
        if augmenter is not None:
            batch = np.stack([augmenter(img, rng) for img in batch])
        return batch.astype(np.float32)

    ds_idx = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), labels))
    if train:
        ds_idx = ds_idx.shuffle(len(paths), seed=config.seed, reshuffle_each_iteration=True)
    size = config.size

    def to_images(idx: Any, y: Any) -> tuple[Any, Any]:
        images = tf.numpy_function(load, [idx], tf.float32)
        images.set_shape((None, size, size, 3))
        return images, y

    return ds_idx.batch(config.batch_size).map(to_images, num_parallel_calls=2).prefetch(2)


def augmenter_for(preset: str) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """The per-image augmentation function of a preset (None for no augmentation).

    Raises:
        ValueError: Unknown preset.
    """
    if not preset or preset == "none":
        return None

    if preset not in PRESETS:
        raise ValueError(f"Unknown augmentation preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    return make_augmenter(PRESETS[preset])


def _fit_images(
    config: TrainConfig,
    data: PreparedData,
    model: Any,
    writer: RunWriter,
    cache: _ImageCache,
    phase: str,
    epochs: int,
    learning_rate: float,
) -> None:
    """Train ``model`` end to end on (augmented) images with checkpointing and early stopping."""
    train = _image_pipeline(cache, data.train, data.classes, config, train=True)
    val = _image_pipeline(cache, data.val, data.classes, config, train=False)
    y_train = label_indices(data.train.frame["label"].tolist(), data.classes)
    steps = math.ceil(len(data.train) / config.batch_size)
    _compile(model, learning_rate, decay_steps=epochs * steps)
    model.fit(
        train,
        validation_data=val,
        shuffle=False,  # the pipeline shuffles itself
        epochs=epochs,
        class_weight=class_weights(y_train, len(data.classes)) if config.class_weighting else None,
        callbacks=[
            _progress_callback(writer, phase, epochs, steps, config.batch_size, len(data.train)),
            *_checkpoint_and_stop(writer.run_dir, config.patience),
        ],
        verbose=0,
    )


def _evaluate(
    model: Any, cache: _ImageCache, ds: Dataset, classes: list[str], writer: RunWriter, split: str
) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    def report(done: int, total: int) -> None:
        writer.reporter.progress(done, total, "images", f"evaluating the best model on the {split} split")

    paths = ds.frame["path"].tolist()
    probs = extract_features(compiled_forward(model), paths, cache.size, report, loader=cache.load)
    y_true = label_indices(ds.frame["label"].tolist(), classes)
    y_pred = probs.argmax(axis=1)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
    }


def run_training(config: TrainConfig, run_dir: Path, reporter: Reporter | None = None) -> Path:
    """Train a model as described by ``config`` into ``run_dir``; return the run folder.

    Args:
        config: What to train.
        run_dir: The run folder (created; must be writable).
        reporter: Receives progress and says when to stop (a job's context); None reports nowhere.

    Returns:
        ``run_dir``, holding model.keras, model_card.json, history.csv and config.json (no model when stopped
        before one existed).

    Raises:
        DatasetError: The data cannot train a classifier (checked before any training).
        WeightsUnavailableError: ImageNet weights are missing; train from scratch instead.
    """
    import keras

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = RunWriter(run_dir, reporter)
    (run_dir / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2))
    started = time.time()
    writer.reporter.set_phase("preparing data")
    try:
        data = prepare_data(config)
        keras.utils.set_random_seed(config.seed)
        all_paths = data.train.frame["path"].tolist() + data.val.frame["path"].tolist()
        if data.test is not None:
            all_paths += data.test.frame["path"].tolist()
        fits = len(all_paths) * config.size * config.size * 3 <= MAX_PRELOAD_BYTES
        needs_images = config.fine_tune_epochs > 0 or not config.uses_feature_cache
        cache = _ImageCache(all_paths, config.size, keep=needs_images and fits)
        head_weights = _train_head_on_features(config, data, writer, cache) if config.uses_feature_cache else None
        writer.reporter.set_phase("building the model")
        model, weights_source = build_model(
            config.backbone,
            data.classes,
            config.size,
            weights=config.weights if config.backbone != "small_cnn" else None,
            weights_dir=get_settings().weights_dir,
            dropout=config.dropout,
        )
        if head_weights is not None:
            model.get_layer("predictions").set_weights(head_weights)
            if config.fine_tune_epochs > 0 and config.fine_tune_layers > 0 and not writer.stopping():
                set_trainable(model, config.fine_tune_layers)
                _fit_images(
                    config,
                    data,
                    model,
                    writer,
                    cache,
                    "fine-tune",
                    config.fine_tune_epochs,
                    config.fine_tune_learning_rate,
                )
        else:
            train_from_scratch(model)
            _fit_images(config, data, model, writer, cache, "train", config.epochs, config.learning_rate)
    except StopRequested:
        return run_dir
    model = _best_checkpoint(run_dir) or model
    metrics: dict[str, Any] = {"val": _evaluate(model, cache, data.val, data.classes, writer, "val")}
    if data.test is not None and len(data.test):
        metrics["test"] = _evaluate(model, cache, data.test, data.classes, writer, "test")
    history = _read_history(run_dir)
    metrics.update(
        best_val_accuracy=max((r["val_accuracy"] for r in history if r.get("val_accuracy")), default=None),
        val_accuracy=metrics["val"]["accuracy"],
        test_accuracy=metrics.get("test", {}).get("accuracy"),
        test_macro_f1=metrics.get("test", {}).get("macro_f1"),
    )
    duration = time.time() - started
    card = ModelCard(
        backbone=config.backbone,
        classes=data.classes,
        input_size=config.size,
        preprocessing=get_backbone(config.backbone).preprocessing,
        weights=weights_source,
        data_source=str(data.dataset.manifest or data.dataset.root),
        data_fingerprint=data.dataset.fingerprint(),
        metrics=metrics,
        config={**asdict(config), "duration_s": round(duration, 1)},
        versions=software_versions(),
    )
    writer.reporter.set_phase("saving the model")
    save_model(model, card, run_dir)
    (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    if config.out:
        export_model(run_dir, Path(config.out))
    return run_dir


def _best_checkpoint(run_dir: Path) -> Any:
    import keras

    path = run_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    register_custom_layers()
    return keras.saving.load_model(path, safe_mode=True)


def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / HISTORY_FILE
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
    return rows


def export_model(run_dir: Path, out_dir: Path) -> Path:
    """Copy a finished run's model and card to ``out_dir`` (e.g. ``models/NAME``), replacing it atomically."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in (MODEL_FILE, "model_card.json", HISTORY_FILE, CONFIG_FILE):
        if (Path(run_dir) / name).exists():
            shutil.copy2(Path(run_dir) / name, tmp / name)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.replace(out_dir)
    return out_dir


# Measured on the PBC split (2 cores): MobileNetV2 from block_12 (47 layers) fine-tuned 3 epochs with a cosine-decayed
# 3e-4 learning rate and flip/rotation augmentation reached 99.26 % test accuracy, macro-F1 0.991.
DEFAULT_MODEL_CONFIG = {"backbone": "mobilenet_v2", "input_size": 224}


def default_model_config(data: str) -> TrainConfig:
    """The configuration of the default model (MobileNetV2, two-phase fine-tuning)."""
    settings = get_settings()
    return TrainConfig(data=data, out=str(settings.default_model_dir), **DEFAULT_MODEL_CONFIG)
