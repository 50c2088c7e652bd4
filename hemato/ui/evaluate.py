"""Evaluate page widgets.

Data picker, background evaluation with progress, metrics, drill-down galleries, calibration plots, model
comparison and the cross-lab panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from hemato.config import get_settings
from hemato.data.datasets import DatasetError, discover_dataset
from hemato.data.imaging import ImageError, load_array
from hemato.jobs import JobError
from hemato.status import available_models, cross_lab_path, dataset_options
from hemato.ui.common import load_model_cached
from hemato.ui.jobs import job_status, render_job
from hemato.vision.evaluate import (
    AUTO_SPLIT,
    EvaluationRequest,
    evaluation_job,
    load_result,
    resolve_split,
    result_path,
    start_evaluation,
)
from hemato.vision.explain import explain, overlay
from hemato.vision.models import ModelLoadError, model_key

TYPED_PATH = "Type a path…"
ALL_IMAGES = "all images"
PAGE_SIZE = 12
THUMB = 160
COMPARE_FORMAT = {
    "accuracy": "{:.2%}",
    "macro-F1": "{:.3f}",
    "balanced accuracy": "{:.2%}",
    "ECE": "{:.3f}",
    "seconds": "{:.0f}",
}
CROSS_LAB_TEXT = """
**Why the two scores differ.** The PBC images all come from one hospital laboratory: one automated
analyser and camera, one staining protocol, and crops of the same size centred on a single cell. The BCCD crops
come from **another lab**: a different microscope camera and lighting, a different stain preparation (so the
colours of nuclei and granules differ), **lower resolution**, and **looser crop framing** with red cells and
parts of neighbouring cells around the white cell. A network learns whatever separates the classes in its
training images, including that lab's colours and framing, so part of what it learned does not transfer.

The PBC figure is also **optimistic**: the dataset has no patient identifiers, so its split is made image by image
and cells from the same patient and smear can sit in both the training and the test set. The cross-lab figure is
closer to what to expect on a new lab's slides. Classes the model was not trained on (BASOPHIL in the BCCD crops)
cannot be predicted at all and are counted as **skipped**, not as errors.
"""


# --------------------------------------------------------------------------------------------- cached readers


@st.cache_data(ttl=60, show_spinner=False, max_entries=32)
def _dataset_info(path: str) -> tuple[list[str], int, list[str]]:
    ds = discover_dataset(path)
    return ds.splits, len(ds), ds.classes


@st.cache_data(ttl=60, show_spinner=False, max_entries=64)
def _request_key(model_dir: str, version: str, data_path: str, split: str | None) -> tuple[str, int, str | None]:
    dataset, split_used, key = EvaluationRequest(Path(model_dir), Path(data_path), None, split).resolve()
    return key, len(dataset), split_used


@st.cache_data(show_spinner=False, max_entries=16)
def _read_result(cache_dir: str, key: str, mtime: float) -> dict[str, Any] | None:
    return load_result(Path(cache_dir), key)


def _stored_result(cache_dir: str, key: str) -> dict[str, Any] | None:
    """The stored result for ``key``; parsed once per file version, never caching its absence."""
    try:
        mtime = result_path(Path(cache_dir), key).stat().st_mtime
    except OSError:
        return None
    return _read_result(cache_dir, key, mtime)


@st.cache_data(show_spinner=False, max_entries=2000)
def _thumbnail(path: str, size: int = THUMB) -> np.ndarray | None:
    try:
        return load_array(path, size)
    except ImageError:
        return None


@st.cache_data(show_spinner=False, max_entries=500)
def _gradcam(model_dir: str, version: str, path: str, target: int) -> np.ndarray:

    model, _ = load_model_cached(Path(model_dir))
    # Explain the image the model scored (full size, resized inside like every prediction), then show it small.
    heatmap = explain(model, load_array(path), method="gradcam", target_class=target)
    return overlay(load_array(path, THUMB), heatmap)


# --------------------------------------------------------------------------------------------- inputs


def dataset_picker(key: str) -> tuple[Path, str | None] | None:
    """Dataset (configured, the shared folders or a typed path) and split; None after explaining a problem."""
    settings = get_settings()
    options = dataset_options(settings.data_dir)
    labels = [label for label, _ in options] + [TYPED_PATH]
    left, right = st.columns([3, 1])
    choice = left.selectbox("Dataset", labels, key=f"{key}_dataset")
    if choice == TYPED_PATH:
        typed = left.text_input(
            "Dataset folder or CSV manifest", key=f"{key}_typed", placeholder="/path/to/cells or /path/labels.csv"
        )
        if not typed.strip():
            st.info("Type the path of a folder with one sub-folder per class (or a CSV manifest path,label).")
            return None
        path = Path(typed.strip()).expanduser()
    else:
        path = dict(options)[choice]
    try:
        splits, n_images, _ = _dataset_info(str(path))
    except (DatasetError, OSError) as exc:
        st.error(str(exc))
        return None
    split_labels = [*splits, ALL_IMAGES]
    default = split_labels.index("test") if "test" in splits else len(split_labels) - 1
    split = right.selectbox("Split", split_labels, index=default, key=f"{key}_split")
    if not splits:
        right.caption(f"No split in this data: all {n_images:,} images.")
    return path, None if split == ALL_IMAGES else split


# --------------------------------------------------------------------------------------------- jobs


def _start(requests: list[EvaluationRequest]) -> None:
    """Queue evaluations on the job worker (they run one at a time with other heavy jobs) and rerun."""
    settings = get_settings()
    try:
        for request in requests:
            start_evaluation(request, settings.cache_dir)
    except JobError as exc:
        st.error(str(exc))
        return
    st.rerun()


def evaluation_result(model_dir: Path, data_path: Path, split: str | None, key: str) -> dict[str, Any] | None:
    """The evaluation of ``model_dir`` on the data: instantly when cached, else a button starting a background job.

    Returns:
        The result dict when it exists; None while it is missing, running or failed (the state is shown).
    """
    settings = get_settings()
    split = split if split is not None else "all"
    try:
        job_key, n_images, split_used = _request_key(str(model_dir), model_key(model_dir), str(data_path), split)
    except (DatasetError, ValueError, OSError) as exc:
        st.error(str(exc))
        return None
    result = _stored_result(str(settings.cache_dir), job_key)
    if result is not None:
        return result
    job = evaluation_job(job_key)
    if job is not None and job.active:
        st.markdown("**Evaluating in the background** (you can use other pages meanwhile).")
        job_status(job.id, f"{key}_job")
        return None
    if job is not None and job.state == "failed":
        render_job(job, f"{key}_job")
    where = f"the {split_used} split" if split_used else "all images"
    st.info(f"{model_dir.name} has not been evaluated on {n_images:,} images ({where} of {data_path.name}) yet.")
    if st.button("Evaluate", key=f"{key}_start", type="primary"):
        _start([EvaluationRequest(model_dir, data_path, None, split)])
    return None


def _results_for(requests: list[tuple[Path, Path, str | None]], key: str, label: str) -> list[dict] | None:
    """Results of several evaluations; starts missing ones with one button and polls them. None until all done."""
    settings = get_settings()
    keys, missing = [], []
    for model_dir, data_path, split in requests:
        try:
            job_key, _, _ = _request_key(str(model_dir), model_key(model_dir), str(data_path), split or "all")
        except (DatasetError, ValueError, OSError) as exc:
            st.error(f"{model_dir.name} on {data_path.name}: {exc}")
            return None
        keys.append(job_key)
        if _stored_result(str(settings.cache_dir), job_key) is None:
            missing.append((job_key, model_dir, data_path, split))
    found = {job_key: evaluation_job(job_key) for job_key, *_ in missing}
    running = [job for job in found.values() if job is not None and job.active]
    for i, job in enumerate(found.values()):
        if job is not None and job.state == "failed":
            render_job(job, f"{key}_failed_{i}")
    if running:
        st.markdown("**Evaluating in the background**, one heavy job at a time.")
        for i, job in enumerate(running):
            job_status(job.id, f"{key}_job_{i}")
        return None
    if missing:
        st.info(f"{len(missing)} of {len(requests)} evaluations are not computed yet.")
        if st.button(label, key=f"{key}_start", type="primary"):
            _start([EvaluationRequest(m, d, None, s or "all") for _, m, d, s in missing])
        return None
    return [_stored_result(str(settings.cache_dir), k) for k in keys]


# --------------------------------------------------------------------------------------------- figures


def confusion_figure(result: dict[str, Any], normalise: bool, chosen: tuple[str, str] | None) -> go.Figure:
    """Heatmap of the confusion matrix with one selectable marker per cell (heatmaps are not selectable)."""
    labels = result["confusion_matrix"]["labels"]
    counts = np.array(result["confusion_matrix"]["matrix"], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    z = shares if normalise else counts
    text = [
        [f"{int(c)}<br>{s:.1%}" if normalise else f"{int(c)}" for c, s in zip(crow, srow, strict=True)]
        for crow, srow in zip(counts, shares, strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            hoverinfo="skip",
            colorbar={"title": "share of row" if normalise else "images"},
        )
    )
    xs = [p for _ in labels for p in labels]
    ys = [t for t in labels for _ in labels]
    custom = [[int(counts[i, j]), float(shares[i, j])] for i in range(len(labels)) for j in range(len(labels))]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            customdata=custom,
            marker={"symbol": "square", "size": 60, "color": "rgba(0,0,0,0)"},
            selected={"marker": {"color": "rgba(255,255,255,0.25)"}},
            unselected={"marker": {"opacity": 1}},
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[0]} images (%{customdata[1]:.1%} of row)"
            "<extra>click to see them</extra>",
            showlegend=False,
        )
    )
    if chosen is not None and chosen[0] in labels and chosen[1] in labels:
        i, j = labels.index(chosen[0]), labels.index(chosen[1])
        fig.add_shape(
            type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line={"color": "#b0243b", "width": 3}
        )
    fig.update_layout(
        xaxis={"title": "predicted class", "side": "bottom", "type": "category"},
        yaxis={"title": "true class", "autorange": "reversed", "type": "category"},
        height=120 + 90 * len(labels),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        clickmode="event+select",
        dragmode=False,
    )
    return fig


def reliability_figure(result: dict[str, Any]) -> go.Figure:
    """Accuracy against mean confidence per bin, with the diagonal of perfect calibration."""
    bins = [b for b in result["reliability"] if b["count"]]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=[(b["lo"] + b["hi"]) / 2 for b in bins],
            y=[b["accuracy"] for b in bins],
            width=[b["hi"] - b["lo"] for b in bins],
            customdata=[[b["count"], b["confidence"]] for b in bins],
            hovertemplate="accuracy %{y:.1%}<br>mean confidence %{customdata[1]:.1%}<br>%{customdata[0]} images"
            "<extra></extra>",
            name="accuracy in bin",
            marker={"color": "#b0243b", "line": {"color": "white", "width": 1}},
        )
    )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dash", "color": "gray"})
    )
    fig.update_layout(
        title=f"Reliability diagram · ECE {result['ece']:.3f}",
        xaxis={"title": "confidence (top probability)", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1.02]},
        height=360,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def confidence_figure(result: dict[str, Any]) -> go.Figure:
    """Histogram of top-class confidence for correct and wrong answers."""
    summary = result["confidence"]
    edges = np.array(summary["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    # A log axis keeps a handful of mistakes visible beside a thousand correct answers.
    log = summary["correct"]["n"] > 50 * max(1, summary["wrong"]["n"])
    fig = go.Figure()
    for name, colour in (("correct", "#2e7d32"), ("wrong", "#b0243b")):
        part = summary[name]
        mean = f", mean {part['mean']:.2f}" if part["mean"] is not None else ""
        fig.add_trace(
            go.Bar(x=centres, y=part["hist"], name=f"{name} ({part['n']}{mean})", marker={"color": colour}, opacity=0.8)
        )
    fig.update_layout(
        title="Confidence: correct vs wrong answers",
        barmode="overlay",
        xaxis={"title": "confidence", "range": [0, 1]},
        yaxis={
            "title": "images",
            "type": "log" if log else "linear",
        },
        height=360,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def per_class_table(result: dict[str, Any]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class."""
    table = pd.DataFrame(result["per_class"]).T[["precision", "recall", "f1", "support"]]
    table["support"] = table["support"].astype(int)
    table.index.name = "class"
    return table


# --------------------------------------------------------------------------------------------- rendering


def headline(result: dict[str, Any]) -> None:
    """The metric tiles and where the numbers come from."""
    cols = st.columns(6)
    cols[0].metric("Accuracy", f"{result['accuracy']:.1%}")
    cols[1].metric("Macro-F1", f"{result['macro_f1']:.3f}")
    cols[2].metric("Balanced accuracy", f"{result['balanced_accuracy']:.1%}")
    cols[3].metric("ECE (15 bins)", f"{result['ece']:.3f}")
    cols[4].metric("Images scored", f"{result['n']:,}")
    cols[5].metric("Skipped", f"{result.get('n_skipped', 0):,}")
    data = result["data"]
    split = f"{data['split']} split" if data["split"] else "all images"
    st.caption(
        f"Model `{result['model']['name']}` ({result['model']['backbone']}, {result['model']['input_size']} px) on "
        f"`{data['name']}` ({split}); computed in {result['seconds']:.0f} s on {result['created']}."
    )
    if result.get("skipped"):
        counts = ", ".join(f"{label} {n}" for label, n in result["skipped"].items())
        st.info(f"Skipped images whose class the model was never trained on: {counts}. They are not counted as errors.")
    if result.get("unreadable"):
        with st.expander(f"{len(result['unreadable'])} unreadable image(s) left out"):
            for row in result["unreadable"]:
                st.write(f"`{row['path']}`: {row['reason']}")


def _prob_text(row: dict[str, Any], classes: list[str]) -> str:
    order = np.argsort(row["probs"])[::-1][:3]
    return " · ".join(f"{classes[i][:4]} {row['probs'][i]:.2f}" for i in order)


def gallery(
    rows: list[dict[str, Any]],
    classes: list[str],
    key: str,
    empty: str,
    model_dir: Path | None = None,
    cam_target: str | None = None,
) -> None:
    """A paged grid of images with truth, prediction and top probabilities (and Grad-CAM when asked)."""
    if not rows:
        st.info(empty)
        return
    pages = (len(rows) - 1) // PAGE_SIZE + 1
    page = 1
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"{key}_page"))
    st.caption(f"{len(rows):,} image(s); showing {PAGE_SIZE * (page - 1) + 1}–{min(len(rows), PAGE_SIZE * page)}.")
    cols = st.columns(6)
    version = model_key(model_dir) if model_dir else ""
    for i, row in enumerate(rows[PAGE_SIZE * (page - 1) : PAGE_SIZE * page]):
        with cols[i % 6]:
            image = _thumbnail(row["path"])
            if image is None:
                st.warning(f"{Path(row['path']).name}: unreadable")
                continue
            if cam_target is not None and model_dir is not None:
                target = row["predicted"] if cam_target == "predicted" else row["label"]
                try:
                    image = _gradcam(str(model_dir), version, row["path"], classes.index(target))
                except (ModelLoadError, ValueError) as exc:
                    st.error(f"Grad-CAM failed: {exc}")
            mark = ":green[✓]" if row["correct"] else ":red[✗]"
            st.image(image, width="stretch")
            st.caption(
                f"{mark} true **{row['label']}** → **{row['predicted']}** ({row['confidence']:.0%})  \n"
                f"{_prob_text(row, classes)}  \n`{Path(row['path']).name}`"
            )


def _default_cell(result: dict[str, Any]) -> tuple[str, str]:
    labels = result["confusion_matrix"]["labels"]
    matrix = np.array(result["confusion_matrix"]["matrix"])
    off = matrix - np.diag(np.diag(matrix))
    i, j = np.unravel_index(int(np.argmax(off)), off.shape) if off.max() > 0 else (0, 0)
    return labels[int(i)], labels[int(j)]


def _cell_from_event(event: Any) -> tuple[str, str] | None:
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points:
        if "x" in point and "y" in point and point.get("curve_number", 1) == 1:
            return str(point["y"]), str(point["x"])
    return None


def confusion_drilldown(result: dict[str, Any], model_dir: Path, key: str) -> None:
    """Confusion matrix (counts/row-normalised) whose selected cell opens a gallery of exactly those images."""
    labels = result["confusion_matrix"]["labels"]
    true_key, pred_key, seen_key = f"{key}_true", f"{key}_pred", f"{key}_seen_click"
    if st.session_state.get(true_key) not in labels or st.session_state.get(pred_key) not in labels:
        st.session_state[true_key], st.session_state[pred_key] = _default_cell(result)
    # A new click on the chart moves the two select boxes (set before they are drawn below); the boxes can
    # still be changed by hand afterwards.
    clicked = _cell_from_event(st.session_state.get(f"{key}_chart"))
    if clicked is not None and clicked != st.session_state.get(seen_key):
        st.session_state[true_key], st.session_state[pred_key] = clicked
    st.session_state[seen_key] = clicked
    chosen = (st.session_state[true_key], st.session_state[pred_key])

    left, right = st.columns([3, 2])
    with left:
        mode = st.radio(
            "Show",
            ["Counts", "Row-normalised (recall)"],
            horizontal=True,
            key=f"{key}_norm",
            label_visibility="collapsed",
        )
        st.plotly_chart(
            confusion_figure(result, mode != "Counts", chosen),
            key=f"{key}_chart",
            on_select="rerun",
            selection_mode="points",
            config={"displayModeBar": False},
        )
        st.caption("Click a cell to see its images below (or choose the cell with the two boxes on the right).")
    with right:
        st.markdown("**Per-class scores**")
        st.dataframe(
            per_class_table(result).style.format({"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}"}),
            width="stretch",
            key=f"{key}_table",
        )
        a, b = st.columns(2)
        a.selectbox("True class", labels, key=true_key)
        b.selectbox("Predicted class", labels, key=pred_key)

    true_label, pred_label = st.session_state[true_key], st.session_state[pred_key]
    rows = [r for r in result["rows"] if r["label"] == true_label and r["predicted"] == pred_label]
    rows.sort(key=lambda r: r["confidence"], reverse=true_label != pred_label)
    verdict = "correct" if true_label == pred_label else "confusions"
    st.markdown(f"#### True {true_label} → predicted {pred_label} ({verdict})")
    cam = _cam_choice(key)
    gallery(rows, result["classes"], f"{key}_cell", "No image falls in this cell.", model_dir, cam)


def _cam_choice(key: str) -> str | None:
    show = st.toggle("Overlay Grad-CAM", key=f"{key}_cam", help="Where the network looked (about 0.1–0.3 s per image).")
    if not show:
        return None
    target = st.radio("Explain", ["predicted class", "true class"], horizontal=True, key=f"{key}_cam_target")
    return "predicted" if target == "predicted class" else "true"


def show_results(result: dict[str, Any], model_dir: Path, key: str) -> None:
    """Everything about one evaluation: headline, confusion drill-down, galleries and calibration."""
    headline(result)
    st.subheader("Confusion matrix")
    confusion_drilldown(result, model_dir, key)

    st.subheader("Hard cases")
    wrong_tab, unsure_tab = st.tabs(["Misclassified only", "Least confident"])
    with wrong_tab:
        wrong = sorted((r for r in result["rows"] if not r["correct"]), key=lambda r: -r["confidence"])
        st.caption("Most confident mistakes first: these are the ones to look at.")
        gallery(wrong, result["classes"], f"{key}_wrong", "No misclassified image: every prediction is right.")
    with unsure_tab:
        unsure = sorted(result["rows"], key=lambda r: r["confidence"])[: PAGE_SIZE * 4]
        st.caption("The images the model was least sure about (lowest top-class probability).")
        gallery(unsure, result["classes"], f"{key}_unsure", "No images.")

    st.subheader("Calibration")
    st.caption(
        "A calibrated model that says 90 % is right 90 % of the time. Bars below the diagonal mean over-confidence. "
        "ECE is the average gap between confidence and accuracy, weighted by how many images fall in each bin."
    )
    left, right = st.columns(2)
    left.plotly_chart(reliability_figure(result), key=f"{key}_reliability", config={"displayModeBar": False})
    right.plotly_chart(confidence_figure(result), key=f"{key}_confidence", config={"displayModeBar": False})


# --------------------------------------------------------------------------------------------- compare and cross-lab


def comparison_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per model: headline metrics on the same data."""
    return pd.DataFrame(
        [
            {
                "model": r["model"]["name"],
                "backbone": r["model"]["backbone"],
                "input px": r["model"]["input_size"],
                "accuracy": r["accuracy"],
                "macro-F1": r["macro_f1"],
                "balanced accuracy": r["balanced_accuracy"],
                "ECE": r["ece"],
                "images": r["n"],
                "skipped": r.get("n_skipped", 0),
                "seconds": r["seconds"],
            }
            for r in results
        ]
    ).set_index("model")


def per_class_bars(results: list[dict[str, Any]], names: list[str], metric: str, title: str) -> go.Figure:
    """Grouped bars of one per-class metric, one colour per result."""
    fig = go.Figure()
    for result, name in zip(results, names, strict=True):
        labels = list(result["per_class"])
        fig.add_trace(go.Bar(x=labels, y=[result["per_class"][c][metric] for c in labels], name=name))
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis={"range": [0, 1.05], "title": metric},
        height=360,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def compare_panel(data: tuple[Path, str | None] | None, key: str) -> None:
    """Several models on the same images: a metrics table and per-class F1 bars."""
    models = available_models(get_settings())
    if len(models) < 2:
        st.info("Comparing needs at least two trained models; train more on the Train page.")
    if data is None:
        st.info("Choose a dataset on the Results tab first.")
        return
    names = [name for name, _ in models]
    chosen = st.multiselect("Models to compare", names, default=names[:3], key=f"{key}_models")
    if not chosen:
        return
    data_path, split = data
    st.caption(f"All on the same images: `{data_path.name}`, {split or 'all images'}.")
    paths = [dict(models)[name] for name in chosen]
    results = _results_for([(p, data_path, split) for p in paths], key, "Evaluate the selected models")
    if results is None:
        return
    table = comparison_table(results)
    st.dataframe(
        table.style.format(
            {
                "accuracy": "{:.2%}",
                "macro-F1": "{:.3f}",
                "balanced accuracy": "{:.2%}",
                "ECE": "{:.3f}",
                "seconds": "{:.0f}",
            }
        ),
        width="stretch",
        key=f"{key}_table",
    )
    if len({r["n"] for r in results}) > 1:
        st.warning("The models know different classes, so they were scored on different numbers of images.")
    st.plotly_chart(
        per_class_bars(results, [r["model"]["name"] for r in results], "f1", "F1 per class"),
        key=f"{key}_bars",
        config={"displayModeBar": False},
    )


def crosslab_panel(model_dir: Path, key: str) -> None:
    """The same model on the configured (PBC) test split and on the second-lab BCCD crops, side by side."""
    settings = get_settings()
    other = cross_lab_path()
    if settings.data_dir is None or other is None:
        st.info("The cross-lab check needs the configured dataset and `../shared/data/bccd_wbc_crops`.")
        return
    home = Path(settings.data_dir)
    try:
        home_split = resolve_split(discover_dataset(home), AUTO_SPLIT)
    except (DatasetError, OSError) as exc:
        st.error(str(exc))
        return
    st.caption(
        f"`{model_dir.name}` on `{home.name}` ({home_split or 'all images'}) and on `{other.name}` "
        "(single white cells cropped from another lab's smear photos)."
    )
    results = _results_for([(model_dir, home, home_split), (model_dir, other, None)], key, "Run the cross-lab check")
    if results is None:
        st.markdown(CROSS_LAB_TEXT)
        return
    names = [f"{home.name} ({home_split or 'all'})", f"{other.name} (other lab)"]
    cols = st.columns(2)
    for col, result, name in zip(cols, results, names, strict=True):
        with col, st.container(border=True):
            st.markdown(f"**{name}**")
            a, b, c = st.columns(3)
            a.metric("Accuracy", f"{result['accuracy']:.1%}")
            b.metric("Macro-F1", f"{result['macro_f1']:.3f}")
            c.metric("Images", f"{result['n']:,}")
            if result.get("skipped"):
                counts = ", ".join(f"{label} {n}" for label, n in result["skipped"].items())
                st.caption(f"Skipped (class unknown to the model): {counts}")
    drop = results[0]["accuracy"] - results[1]["accuracy"]
    st.markdown(
        f"Accuracy drops by **{drop * 100:.1f} percentage points** in the other lab."
        if drop > 0
        else "The model does as well in the other lab here."
    )
    st.plotly_chart(
        per_class_bars(results, names, "recall", "Recall per class: same model, two labs"),
        key=f"{key}_bars",
        config={"displayModeBar": False},
    )
    st.markdown(CROSS_LAB_TEXT)
