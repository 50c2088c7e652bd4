"""Streamlit pieces of the Train page: the run form, the live run panel and the run history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from hemato.config import get_settings
from hemato.data.datasets import DatasetError
from hemato.jobs import JobError, format_eta
from hemato.training.runs import (
    ACTIVE_STATES,
    Run,
    RunError,
    get_run,
    list_runs,
    refresh_run,
    run_batches,
    run_history,
    run_job,
    run_metrics,
    submit_run,
)
from hemato.training.train import TrainConfig
from hemato.ui.jobs import job_status
from hemato.vision.augment import PRESETS
from hemato.vision.models import BACKBONES, local_weights_path

WATCH_KEY = "train_watch_run"
STATE_ICONS = {"queued": "⏳", "running": "🏃", "done": "✅", "stopped": "⏹️", "failed": "❌"}


def _presets() -> list[str]:

    return list(PRESETS)


def run_form() -> TrainConfig | None:
    """The training form; returns a config when the user presses Train.

    The backbone and the weights are chosen above the form, so the form shows only the controls that apply:
    a network trained from random weights has no head phase and nothing to fine-tune.
    """
    settings = get_settings()
    defaults = TrainConfig(data="")
    top_left, top_right = st.columns([2, 1])
    backbone = top_left.selectbox(
        "Backbone", list(BACKBONES), format_func=lambda k: BACKBONES[k].label, key="train_backbone"
    )
    spec = BACKBONES[backbone]
    pretrained = spec.weights_file is not None
    random_init = pretrained and top_right.checkbox(
        "Start from random weights (no ImageNet)", value=False, key="train_random"
    )
    from_scratch = not pretrained or random_init
    if from_scratch:
        st.caption("Trained end to end from random weights: every layer learns, so there is no separate fine-tuning.")
    with st.form("train_form"):
        data = st.text_input(
            "Dataset folder or CSV manifest",
            value=str(settings.data_dir or ""),
            key="train_data",
            help="Class sub-folders (optionally under train/val/test) or a path,label[,split] CSV.",
        )
        left, mid, right = st.columns(3)
        size = left.select_slider("Input size (px)", [64, 96, 128, 160, 192, 224], value=224, key="train_size")
        epochs_label = "Epochs" if from_scratch else "Head epochs"
        epochs = mid.slider(epochs_label, 1, 60, defaults.epochs, key="train_epochs")
        fine_epochs, fine_layers = 0, 0
        if not from_scratch:
            fine_epochs = mid.slider("Fine-tuning epochs", 0, 10, defaults.fine_tune_epochs, key="train_ft_epochs")
            fine_layers = mid.slider("Top layers to unfreeze", 0, 80, defaults.fine_tune_layers, key="train_ft_layers")
        batch = right.select_slider("Batch size", [8, 16, 32, 64], value=32, key="train_batch")
        lr = right.select_slider(
            "Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=1e-3, format_func="{:g}".format, key="train_lr"
        )
        patience = right.slider("Early-stopping patience", 1, 10, 4, key="train_patience")
        presets = _presets()
        augment = left.selectbox("Augmentation preset", presets, index=presets.index(defaults.augment), key="train_aug")
        class_weighting = mid.checkbox("Weight classes by rarity", value=True, key="train_class_weights")
        submitted = st.form_submit_button("Train", type="primary")
    if pretrained and not random_init and local_weights_path(backbone, settings.weights_dir) is None:
        st.warning(
            f"No local ImageNet weights for {spec.label}: Keras will try to download them. If you are offline, "
            "tick 'Start from random weights' or choose the small CNN."
        )
    if not submitted:
        return None
    return TrainConfig(
        data=data.strip(),
        backbone=backbone,
        input_size=size,
        epochs=epochs,
        fine_tune_epochs=fine_epochs,
        fine_tune_layers=fine_layers,
        batch_size=batch,
        learning_rate=lr,
        fine_tune_learning_rate=lr * defaults.fine_tune_learning_rate / defaults.learning_rate,
        augment=augment,
        class_weighting=class_weighting,
        patience=patience,
        weights=None if random_init else "imagenet",
    )


def start(config: TrainConfig) -> None:
    """Submit a run and watch it; bad data or an unwritable folder becomes an error message."""
    if not config.data:
        st.error("Enter a dataset folder or CSV manifest first.")
        return
    try:
        busy = [r for r in list_runs() if r.status in ACTIVE_STATES]
        run = submit_run(config)
    except (DatasetError, RunError, JobError, OSError, ValueError) as exc:
        st.error(f"Training not started: {exc}")
        return
    st.session_state[WATCH_KEY] = run.id
    if busy:
        st.info(f"Run {run.id} is queued: it starts when run {busy[0].id} (and any other heavy job) finishes.")
    else:
        st.success(f"Run {run.id} started in the background. You can leave this page; it keeps training.")


def curves_figure(runs: list[Run], with_batches: bool = True) -> go.Figure:
    """Loss and accuracy curves (train and val) for one or more runs, from their logs on disk."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    for run in runs:
        history = pd.DataFrame(run_history(run.path))
        tag = f"{run.id[-6:]} " if len(runs) > 1 else ""
        if with_batches and len(runs) == 1:
            batches = pd.DataFrame(run_batches(run.path))
            if not batches.empty:
                x = _global_epoch(batches)
                fig.add_scatter(x=x, y=batches["loss"], name="train loss (batches)", row=1, col=1, opacity=0.35)
                fig.add_scatter(x=x, y=batches["accuracy"], name="train acc (batches)", row=1, col=2, opacity=0.35)
        if history.empty:
            continue
        x = _global_epoch(history)
        for metric, col in (("loss", 1), ("accuracy", 2)):
            fig.add_scatter(x=x, y=history[metric], name=f"{tag}train {metric}", mode="lines+markers", row=1, col=col)
            fig.add_scatter(
                x=x, y=history[f"val_{metric}"], name=f"{tag}val {metric}", mode="lines+markers", row=1, col=col
            )
    fig.update_xaxes(title_text="epoch (head, then fine-tuning)")
    fig.update_layout(height=360, margin={"t": 40, "b": 10, "l": 10, "r": 10}, legend={"orientation": "h"})
    return fig


def _global_epoch(frame: pd.DataFrame) -> pd.Series:
    """Epoch numbers continued across phases, so fine-tuning follows the head phase on one axis."""
    offsets, offset, last_phase, last_epoch = [], 0.0, None, 0.0
    for phase, epoch in zip(frame["phase"], frame["epoch"], strict=True):
        if last_phase is not None and phase != last_phase:
            offset += float(np.ceil(last_epoch))
        offsets.append(offset + float(epoch))
        last_phase, last_epoch = phase, float(epoch)
    return pd.Series(offsets)


def status_panel(run: Run, where: str) -> None:
    """One run: live progress, curves and the Stop button while it trains; its outcome afterwards."""
    run = refresh_run(run)
    state = run.status
    st.markdown(f"**Run {run.id}** · {BACKBONES[run.backbone].label} · {STATE_ICONS.get(state, '')} {state}")
    current = run_job(run)
    if current is not None and current.active:
        job_status(
            current.id,
            f"train_{where}",
            cancel_label="Stop",
            cancel_help="Ends the run after the current batch; keeps the best model",
            body=lambda _job: st.plotly_chart(curves_figure([run]), key=f"curves_{where}_{run.id}"),
        )
        return
    if state == "failed":
        st.error(run.message or "The run failed.")
        if current is not None and current.log_path:
            st.caption(f"Details for whoever runs the app: `{current.log_path}`")
    elif state in ("done", "stopped"):
        metrics = run_metrics(run)
        parts = [f"duration {format_eta(run.duration_s)}"] if run.duration_s else []
        if metrics.get("val_accuracy") is not None:
            parts.append(f"val accuracy {metrics['val_accuracy']:.2%}")
        if metrics.get("test_accuracy") is not None:
            parts.append(f"test accuracy {metrics['test_accuracy']:.2%} · macro-F1 {metrics['test_macro_f1']:.3f}")
        where_saved = f" Model saved in `{run.path}`." if metrics else f" {run.message}"
        st.success(f"Finished ({state}): " + " · ".join(parts) + "." + where_saved)
    st.plotly_chart(curves_figure([run]), key=f"curves_{where}_{run.id}")


def live_panel() -> None:
    """The watched (or currently active, else latest) run, live while it trains."""
    runs = list_runs()
    watched = st.session_state.get(WATCH_KEY)
    run = next((r for r in runs if r.id == watched), None)
    if run is None:
        run = next((r for r in reversed(runs) if r.status in ACTIVE_STATES), None) or (runs[0] if runs else None)
    if run is None:
        st.info("No runs yet: fill in the form and press Train.")
        return
    queued = [r for r in runs if r.status == "queued" and r.id != run.id]
    if queued:
        st.caption(f"{len(queued)} more run(s) queued; heavy jobs (training, evaluation) run one at a time.")
    status_panel(run, "live")


def history_table() -> None:
    """All runs with status and scores; pick one to watch or two to overlay."""
    runs = list_runs()
    if not runs:
        return
    table = pd.DataFrame(
        {
            "run": [r.id for r in runs],
            "status": [f"{STATE_ICONS.get(r.status, '')} {r.status}" for r in runs],
            "backbone": [r.backbone for r in runs],
            "best val acc": [r.best_val_accuracy for r in runs],
            "test acc": [r.test_accuracy for r in runs],
            "duration (s)": [r.duration_s for r in runs],
            "data": [Path(r.data).name for r in runs],
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "best val acc": st.column_config.NumberColumn(format="percent"),
            "test acc": st.column_config.NumberColumn(format="percent"),
            "duration (s)": st.column_config.NumberColumn(format="%.0f"),
        },
        key="train_runs_table",
    )
    ids = [r.id for r in runs]
    left, right = st.columns(2)
    chosen = left.selectbox("Open a run's curves", ids, index=None, key="train_open_run")
    if chosen and left.button("Watch this run above", key="train_watch_btn"):
        st.session_state[WATCH_KEY] = chosen
        st.rerun()
    overlay = right.multiselect("Overlay runs", ids, max_selections=4, key="train_overlay")
    if chosen:
        with left:
            status_panel(get_run(chosen), "history")
    if len(overlay) >= 2:
        right.plotly_chart(curves_figure([get_run(i) for i in overlay], with_batches=False), key="train_overlay_fig")
