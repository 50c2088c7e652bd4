"""Predict & Explain page widgets: image input, predictions, saliency, layer and neuron views, ImageNet top-5.

Slow work (Score-CAM, SmoothGrad, the all-methods grid, activation maximisation, the TFLite export) runs as jobs on
the job worker (:mod:`hemato.jobs`); the page polls them through :mod:`hemato.ui.jobs` and never blocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from hemato import jobs
from hemato.config import get_settings
from hemato.data.datasets import DatasetError, discover_dataset
from hemato.data.imaging import ImageError, load_array, open_image
from hemato.files import atomic_path
from hemato.status import available_models
from hemato.ui.common import load_model_cached
from hemato.ui.jobs import job_status
from hemato.vision.explain import COLORMAPS, METHODS, SLOW_METHODS, colorize, explain, overlay, stored_heatmaps
from hemato.vision.export import ENV_TFLITE_EXPORT, TFLITE_FILE, start_tflite_export, tflite_cache_path
from hemato.vision.imagenet import imagenet_model, imagenet_top
from hemato.vision.models import ModelLoadError, WeightsUnavailableError, cam_layers, last_conv_layer, model_key
from hemato.vision.neurons import feature_maps, job_dir, job_images, layer_table, request_key, start_maximization
from hemato.vision.predict import Predictor

UPLOAD_TYPES = ["jpg", "jpeg", "png", "bmp", "tif", "tiff"]
SOURCE_UPLOAD = "Upload images"
SOURCE_DATASET = "Pick from the dataset"
GRID_COLUMNS = 5
MAX_IMAGES = 200
BACKEND_LABELS = {
    "tflite": "TFLite / LiteRT with XNNPACK",
    "tf.function": "compiled TensorFlow graph (the TFLite export is prepared in the background)",
}


@dataclass
class InputImage:
    """One image the user gave, decoded to uint8 RGB."""

    name: str
    array: np.ndarray
    digest: str
    label: str | None = None  # the true class when picked from a labelled dataset


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ input


@st.cache_data(ttl=120, show_spinner=False, max_entries=4)
def _dataset_frame(path: str) -> pd.DataFrame | None:
    try:
        ds = discover_dataset(path)
    except (DatasetError, OSError):
        return None
    frame = ds.frame
    if "test" in ds.splits:
        frame = frame[frame["split"] == "test"]
    return frame.reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=64)
def _decode_upload(data: bytes, name: str) -> tuple[np.ndarray | None, str]:
    try:
        return np.asarray(open_image(data), dtype=np.uint8), ""
    except ImageError as exc:
        return None, exc.reason


def decode_uploads(files: list[Any]) -> tuple[list[InputImage], list[str]]:
    """Decode uploaded files; unusable ones become messages (``name: reason``) instead of exceptions."""
    images, errors = [], []
    for file in files[:MAX_IMAGES]:
        array, reason = _decode_upload(file.getvalue(), file.name)
        if array is None:
            errors.append(f"{file.name}: {reason.replace('uploaded image', file.name)}")
        else:
            images.append(InputImage(file.name, array, _digest(array)))
    if len(files) > MAX_IMAGES:
        errors.append(f"Only the first {MAX_IMAGES} of {len(files)} images are used.")
    return images, errors


def image_input(key: str) -> list[InputImage]:
    """Upload widget or dataset picker; returns the usable images and shows an error per bad file."""
    frame = _dataset_frame(str(get_settings().data_dir)) if get_settings().data_dir else None
    sources = [SOURCE_UPLOAD] + ([SOURCE_DATASET] if frame is not None and len(frame) else [])
    source = st.radio("Images", sources, horizontal=True, key=f"{key}_source", label_visibility="collapsed")
    if source == SOURCE_UPLOAD:
        files = st.file_uploader(
            "Upload one or many cell images (JPEG, PNG, BMP, TIFF)",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            key=f"{key}_files",
        )
        images, errors = decode_uploads(list(files or []))
        for message in errors:
            st.error(message)
        return images
    assert frame is not None
    classes = sorted(frame["label"].unique().tolist())
    left, right = st.columns([1, 2])
    label = left.selectbox("Class", classes, key=f"{key}_class")
    rows = frame[frame["label"] == label]
    names = [Path(p).name for p in rows["path"]]
    chosen = right.multiselect("Images", names, default=names[:1], key=f"{key}_pick_{label}")
    images = []
    for name in chosen:
        path = rows["path"].iloc[names.index(name)]
        try:
            array = load_array(path)
        except ImageError as exc:
            st.error(str(exc))
            continue
        images.append(InputImage(name, array, _digest(array), label))
    return images


# ------------------------------------------------------------------------------------------ models & caches


@st.cache_resource(show_spinner=False, max_entries=4)
def _predictor(model_dir: str, key: str, tflite: str | None) -> Any:

    model, card = load_model_cached(Path(model_dir))
    if tflite is not None:
        try:
            return Predictor(model, card.input_size, Path(tflite))
        except (ValueError, RuntimeError, OSError):
            pass  # a damaged export: the compiled Keras path gives the same answers
    return Predictor(model, card.input_size)


def _tflite_file(model_dir: Path) -> str | None:
    """The model's TFLite export if present (model folder or cache); else start exporting it in the background."""
    beside = Path(model_dir) / TFLITE_FILE
    cached = tflite_cache_path(get_settings().cache_dir, model_dir)
    for path in (cached, beside):
        if path.is_file() and path.stat().st_mtime >= (Path(model_dir) / "model.keras").stat().st_mtime:
            return str(path)
    if os.environ.get(ENV_TFLITE_EXPORT, "1") != "0":
        # A failed export stays failed (not retried on every view), and without a reachable queue there is none:
        # either way the compiled Keras graph gives the same answers.
        with contextlib.suppress(jobs.JobError):
            start_tflite_export(model_dir, cached)
    return None


def load(model_dir: Path) -> tuple[Any, Any, Any] | None:
    """(model, card, predictor) for a model folder, or None after an error message.

    The predictor runs on the model's TFLite export once it exists (exported once in a background process),
    and on the compiled Keras graph until then.
    """
    try:
        model, card = load_model_cached(model_dir)
    except ModelLoadError as exc:
        st.error(str(exc))
        return None
    return model, card, _predictor(str(model_dir), model_key(model_dir), _tflite_file(model_dir))


@st.cache_data(show_spinner=False, max_entries=1024)
def _probabilities(model_key: str, backend: str, digest: str, _predictor: Any, _image: np.ndarray) -> np.ndarray:
    return _predictor.predict([_image])[0]


def predict_images(predictor: Any, model_key: str, images: list[InputImage]) -> np.ndarray:
    """Probabilities (N, C), cached per model version and image so reruns do not recompute them."""
    return np.stack([_probabilities(model_key, predictor.backend, img.digest, predictor, img.array) for img in images])


def probability_chart(probs: np.ndarray, classes: list[str], height: int = 220) -> go.Figure:
    """Horizontal bar chart of class probabilities, the top class highlighted."""
    best = int(np.argmax(probs))
    colors = ["#b0243b" if i == best else "#c9ced6" for i in range(len(classes))]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=classes,
            orientation="h",
            marker_color=colors,
            text=[f"{p:.1%}" for p in probs],
            textposition="auto",
        )
    )
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis={"range": [0, 1], "tickformat": ".0%"}
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def results_table(images: list[InputImage], probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per image: name, predicted class, confidence, true class if known, one column per class."""
    rows = []
    for img, p in zip(images, probs, strict=True):
        best = int(np.argmax(p))
        row = {"image": img.name, "predicted": classes[best], "confidence": round(float(p[best]), 4)}
        if img.label is not None:
            row["true class"] = img.label
        row.update({c: round(float(v), 4) for c, v in zip(classes, p, strict=True)})
        rows.append(row)
    return pd.DataFrame(rows)


def show_predictions(
    images: list[InputImage], probs: np.ndarray, classes: list[str], key: str, backend: str = ""
) -> None:
    """One card per image (few images) plus a table with CSV download (several images)."""
    if backend:
        st.caption(f"Inference through the fast path: {BACKEND_LABELS.get(backend, backend)}.")
    if len(images) > 1:
        table = results_table(images, probs, classes)
        st.dataframe(table, hide_index=True, width="stretch", key=f"{key}_table")
        st.download_button(
            "Download results (CSV)",
            table.to_csv(index=False).encode(),
            file_name="hematovision_predictions.csv",
            mime="text/csv",
            key=f"{key}_csv",
        )
    for img, p in list(zip(images, probs, strict=True))[:6]:
        best = int(np.argmax(p))
        with st.container(border=True):
            pic, text = st.columns([1, 3])
            pic.image(img.array, caption=img.name, width="stretch")
            truth = f" · true class **{img.label}**" if img.label else ""
            text.markdown(f"**{classes[best]}** with {p[best]:.1%} confidence{truth}")
            text.plotly_chart(probability_chart(p, classes), key=f"{key}_chart_{img.digest}", width="stretch")
    if len(images) > 6:
        st.caption(f"Cards for the first 6 images; all {len(images)} are in the table above.")


# ------------------------------------------------------------------------------------------------ saliency


@st.cache_data(show_spinner=False, max_entries=256)
def _heatmap(
    model_key: str, digest: str, method: str, target: int | None, layer: str, _model: Any, _image: np.ndarray
) -> np.ndarray:
    return explain(_model, _image, method, target, layer)


def _fast_heatmap(model: Any, image: InputImage, method: str, target: int | None, layer: str, mkey: str) -> Any:
    return _heatmap(mkey, image.digest, method, target, layer, model, image.array)


def _input_file(image: InputImage) -> Path:
    """The image saved for the job worker (once per image content)."""
    path = get_settings().cache_dir / "saliency" / "inputs" / f"{image.digest}.png"
    if not path.is_file():
        with atomic_path(path) as tmp:
            Image.fromarray(image.array).save(tmp)
    return path


def _maps_job(
    model_dir: Path, mkey: str, image: InputImage, methods: list[str], target: int | None, layer: str, start: bool
) -> tuple[Path, jobs.Job | None]:
    """The output folder of a saliency request and its job (submitted when ``start``, else only looked up)."""
    request = hashlib.sha1(f"{sorted(methods)}|{target}|{layer}".encode()).hexdigest()[:10]
    out_dir = get_settings().cache_dir / "saliency" / mkey / f"{image.digest}-{request}"
    key = f"{mkey}/{image.digest}-{request}"
    if not start:
        return out_dir, jobs.find("saliency", key)
    names = ", ".join(METHODS[m] for m in methods) if len(methods) < len(METHODS) else "every method"
    params = {"model_dir": str(model_dir), "image_path": str(_input_file(image)), "methods": methods}
    params.update(out_dir=str(out_dir), target_class=target, layer=layer)
    return out_dir, jobs.submit("saliency", params, key=key, label=f"{names} for {image.name}", force=True)


@st.cache_data(show_spinner=False, max_entries=64)
def _stored_maps(out_dir: str, methods: tuple[str, ...], stamp: float) -> dict[str, np.ndarray] | None:
    return stored_heatmaps(Path(out_dir), list(methods))


def _maps(out_dir: Path, methods: list[str]) -> dict[str, np.ndarray] | None:
    files = [out_dir / f"{m}.npy" for m in methods]
    if not all(f.is_file() for f in files):
        return None
    return _stored_maps(str(out_dir), tuple(methods), max(f.stat().st_mtime for f in files))


def _slow_maps(
    model_dir: Path,
    mkey: str,
    image: InputImage,
    methods: list[str],
    opts: dict[str, Any],
    button: tuple[str, str],
    note: str = "",
) -> dict[str, np.ndarray] | None:
    """Heatmaps computed on the job worker: stored ones at once, else a button (label, key), then the job's status."""
    target, layer = opts["target"], opts["layer"]
    out_dir, job = _maps_job(model_dir, mkey, image, methods, target, layer, start=False)
    maps = _maps(out_dir, methods)
    if maps is not None:
        return maps
    label, key = button
    if (job is None or not job.active) and st.button(label, key=key):
        out_dir, job = _maps_job(model_dir, mkey, image, methods, target, layer, start=True)
    if job is not None and (job.active or job.state in ("failed", "cancelled")):
        job_status(job.id, f"{key}_job")
    elif note:
        st.caption(note)
    return None


def _render_overlays(image: InputImage, maps: dict[str, np.ndarray], alpha: float, cmap: str, titles: dict) -> None:
    cols = st.columns(min(len(maps), GRID_COLUMNS))
    for i, (name, heat) in enumerate(maps.items()):
        cols[i % len(cols)].image(overlay(image.array, heat, alpha, cmap), caption=titles.get(name, name))


def saliency_controls(model: Any, classes: list[str], key: str) -> dict[str, Any]:
    """Method, target class, layer, opacity and colour-map pickers; returns the choices."""
    layers = cam_layers(model)
    default_layer = last_conv_layer(model)
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("Method", list(METHODS), format_func=METHODS.get, key=f"{key}_method")
    target_label = c2.selectbox("Explain class", ["predicted class", *classes], key=f"{key}_target")
    layer = c3.selectbox("Layer", layers, index=layers.index(default_layer), key=f"{key}_layer")
    c4, c5 = st.columns(2)
    alpha = c4.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key=f"{key}_alpha")
    cmap = c5.selectbox("Colour map", COLORMAPS, key=f"{key}_cmap")
    target = None if target_label == "predicted class" else classes.index(target_label)
    label = None if target is None else target_label
    return {"method": method, "target": target, "target_label": label, "layer": layer, "alpha": alpha, "cmap": cmap}


def saliency_view(
    model: Any,
    model_dir: Path,
    model_key: str,
    image: InputImage,
    classes: list[str],
    probs: Any,
    opts: dict[str, Any],
    key: str,
) -> None:
    """The chosen saliency map for one image (``opts`` from :func:`saliency_controls`): original, overlay, heatmap."""
    method, target, layer = opts["method"], opts["target"], opts["layer"]
    explained = classes[int(np.argmax(probs))] if target is None else classes[target]
    st.markdown(f"**{METHODS[method]}** for class **{explained}** at layer `{layer}`")
    if method in SLOW_METHODS:
        note = f"{METHODS[method]} runs the network many times; press the button to start it."
        button = (f"Compute {METHODS[method]} (slow)", f"{key}_run_slow")
        maps = _slow_maps(model_dir, model_key, image, [method], opts, button, note)
        if maps is not None:
            _show_triplet(image, maps[method], opts, METHODS[method])
        return
    try:
        heat = _fast_heatmap(model, image, method, target, layer, model_key)
    except ValueError as exc:
        st.error(str(exc))
        return
    _show_triplet(image, heat, opts, METHODS[method])


def _show_triplet(image: InputImage, heat: np.ndarray, opts: dict[str, Any], title: str) -> None:

    a, b, c, _ = st.columns([1, 1, 1, 0.6])
    a.image(image.array, caption=f"{image.name}", width="stretch")
    b.image(overlay(image.array, heat, opts["alpha"], opts["cmap"]), caption=f"{title} overlay", width="stretch")
    c.image(colorize(heat, opts["cmap"]), caption=f"{title} heatmap", width="stretch")


def all_methods_grid(model_dir: Path, model_key: str, image: InputImage, opts: dict[str, Any], key: str) -> None:
    """Every method on the same image, computed on the job worker behind a button."""
    maps = _slow_maps(
        model_dir, model_key, image, list(METHODS), opts, ("Compute all methods side by side", f"{key}_grid")
    )
    if maps is not None:
        _render_overlays(image, maps, opts["alpha"], opts["cmap"], dict(METHODS))


def compare_models(first: tuple[str, Path], image: InputImage, opts: dict[str, Any], key: str) -> None:
    """The same image explained by two models side by side (the chosen method, each model's own last conv)."""
    models = available_models(get_settings())
    others = [name for name, path in models if path != first[1]]
    if not others:
        st.info("Only one model is available. Train another (e.g. VGG16 on the Train page) to compare models.")
        return
    second_name = st.selectbox("Compare with", others, key=f"{key}_second")
    method = opts["method"] if opts["method"] not in SLOW_METHODS else "gradcam"
    if method != opts["method"]:
        st.caption("The comparison uses Grad-CAM (fast); slow methods run in the grid above.")
    cols = st.columns([1, 1, 0.8])
    for col, (name, path) in zip(cols[:2], [first, (second_name, dict(models)[second_name])], strict=True):
        loaded = load(path)
        if loaded is None:
            continue
        model, card, predictor = loaded
        mkey = model_key(path)
        probs = predict_images(predictor, mkey, [image])[0]
        best = int(np.argmax(probs))
        # Match the explained class by name: the two models may list different classes.
        label = opts["target_label"]
        target = card.classes.index(label) if label in card.classes else None
        try:
            heat = _fast_heatmap(model, image, method, target, _default_layer(model), mkey)
        except ValueError as exc:
            col.error(str(exc))
            continue
        col.image(overlay(image.array, heat, opts["alpha"], opts["cmap"]), width="stretch")
        col.markdown(f"**{name}**: {card.classes[best]} ({probs[best]:.1%}) · {METHODS[method]}")


def _default_layer(model: Any) -> str:

    return last_conv_layer(model)


# ------------------------------------------------------------------------------------------------- layers


def layer_views(model: Any, image: InputImage, key: str) -> None:
    """The layer table and, for a chosen layer, a grid of its strongest feature maps for ``image``."""
    table = layer_table(model)
    st.markdown(f"**{model.name}**: {len(table)} layers, {int(table['params'].sum()):,} parameters")
    st.dataframe(table, hide_index=True, height=260, width="stretch", key=f"{key}_layers")
    layers = cam_layers(model)
    c1, c2 = st.columns([2, 1])
    layer = c1.selectbox(
        "Feature maps of layer", layers, index=layers.index(last_conv_layer(model)), key=f"{key}_fm_layer"
    )
    top = c2.slider("How many", 4, 32, 16, 4, key=f"{key}_fm_top")
    fm = feature_maps(model, image.array, layer, top)
    st.caption(
        f"The {len(fm.channels)} strongest of {fm.n_channels} channels of `{layer}` for {image.name} "
        f"({fm.maps.shape[1]}×{fm.maps.shape[2]} each; bright = strong activation)."
    )
    cols = st.columns(8)
    for i, (c, s) in enumerate(zip(fm.channels, fm.strengths, strict=True)):
        cols[i % 8].image(colorize(fm.maps[i], "viridis"), caption=f"ch {c} · {s:.2f}", width="stretch")


# ------------------------------------------------------------------------------------------------- neurons


def _neuron_images(
    model_dir: Path,
    folder: Path,
    layer: str | None,
    units: list[int],
    steps: int,
    captions: dict[int, str],
    key: str,
    button: str,
) -> None:
    """Activation-maximisation images: stored ones at once, else a button, then the job's live status."""
    pictures = job_images(folder)
    if pictures:
        cols = st.columns(min(len(pictures), 6) or 1)
        for i, (unit, img) in enumerate(pictures):
            cols[i % len(cols)].image(img, caption=captions.get(unit, f"unit {unit}"), width="stretch")
        return
    job = jobs.find("activation_max", request_key(folder))
    if (job is None or not job.active) and st.button(button, key=f"{key}_run"):
        job = start_maximization(model_dir, folder, layer, units, steps)
    if job is not None and (job.active or job.state in ("failed", "cancelled")):
        job_status(job.id, f"{key}_job")


def neuron_views(model: Any, model_dir: Path, classes: list[str], image: InputImage | None, key: str) -> None:
    """Activation maximisation for chosen filters and class-model images: background jobs cached per model."""
    cache = get_settings().cache_dir
    st.markdown(
        "Each picture is synthesised from noise by gradient ascent until it excites one unit as strongly as "
        "possible: what that filter or class 'looks for'. Slow on a CPU, so it runs in the background and is "
        "kept on disk for this model."
    )
    steps = st.slider("Optimisation steps", 10, 300, 60, 10, key=f"{key}_steps")
    st.markdown("**Conv filters**")
    layers = cam_layers(model)
    c1, c2 = st.columns([1, 2])
    layer = c1.selectbox("Layer", layers, index=layers.index(last_conv_layer(model)), key=f"{key}_am_layer")
    n_channels = int(model.get_layer(layer).output.shape[-1])
    suggested = feature_maps(model, image.array, layer, 6).channels if image is not None else list(range(6))
    filters = c2.multiselect(
        f"Filters (0–{n_channels - 1}; preset: strongest for the current image)",
        list(range(n_channels)),
        default=suggested,
        max_selections=12,
        key=f"{key}_am_filters_{layer}",
    )
    if filters:
        folder = job_dir(cache, model_dir, layer, filters, steps)
        captions = {f: f"{layer} · filter {f}" for f in filters}
        _neuron_images(model_dir, folder, layer, filters, steps, captions, f"{key}_am", "Visualise these filters")
    st.markdown("**Class-model images** (one per output unit)")
    units = list(range(len(classes)))
    folder = job_dir(cache, model_dir, None, units, steps)
    captions = dict(enumerate(classes))
    _neuron_images(model_dir, folder, None, units, steps, captions, f"{key}_class", "Compute class-model images")


# ------------------------------------------------------------------------------------------------ ImageNet


@st.cache_resource(show_spinner="Loading the ImageNet MobileNetV2…", max_entries=1)
def _imagenet_ready(weights_dir: str) -> bool:

    imagenet_model(Path(weights_dir))
    return True


def imagenet_view(image: InputImage, key: str) -> None:
    """ImageNet top-5 of the original MobileNetV2 for this cell, with a note on transfer learning."""
    weights_dir = get_settings().weights_dir
    st.markdown(
        "The backbone of the default model was first trained on **ImageNet** (1000 everyday object classes, no "
        "blood cells). Here is what that original network, with its ImageNet head, thinks this cell is: transfer "
        "learning starts from these generic features and only retrains the head (and maybe the top layers)."
    )
    try:
        _imagenet_ready(str(weights_dir))
        top = imagenet_top(image.array, weights_dir)
    except (WeightsUnavailableError, OSError) as exc:
        st.error(str(exc))
        return
    pic, chart = st.columns([1, 3])
    pic.image(image.array, caption=image.name, width="stretch")
    labels = [label for label, _ in top]
    probs = np.array([p for _, p in top])
    chart.plotly_chart(probability_chart(probs, labels), key=f"{key}_imagenet_{image.digest}", width="stretch")
