"""Streamlit pieces of the Augmentation studio: image choice, per-augmentation controls and the preview grid."""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from hemato.config import get_settings
from hemato.data.imaging import ImageError, load_array, open_image
from hemato.ui.common import dataset_or_error
from hemato.vision.augment import AUGMENTATIONS, PRESETS, AugmentConfig, AugmentSpec, apply_single, preview_grid

PREVIEW_SIZE = 224
THUMB_SIZE = 112
KINDS = {"geometric": "Geometry", "colour": "Colour and stain", "noise": "Blur and noise"}


def _on_key(name: str) -> str:
    return f"aug_on_{name}"


def _param_key(name: str, param: str) -> str:
    return f"aug_{name}_{param}"


def apply_preset(preset: str) -> None:
    """Set every toggle and slider to the values of ``preset`` (switched-off ops keep their defaults)."""
    config = PRESETS[preset]
    for name, spec in AUGMENTATIONS.items():
        st.session_state[_on_key(name)] = name in config.ops
        values = config.ops.get(name, spec.defaults())
        for p in spec.params:
            st.session_state[_param_key(name, p.name)] = float(values[p.name])


def _preset_changed() -> None:
    apply_preset(st.session_state["aug_preset"])


def preset_selector() -> str:
    """The preset select box (the same presets the Train page offers); fills in the controls on change."""
    if _on_key("hflip") not in st.session_state:
        apply_preset(st.session_state.get("aug_preset", "standard"))
    names = list(PRESETS)
    return st.selectbox(
        "Start from a preset (the ones training uses)",
        names,
        index=names.index("standard"),
        key="aug_preset",
        on_change=_preset_changed,
    )


def current_config() -> AugmentConfig:
    """The configuration the controls describe."""
    ops = {}
    for name, spec in AUGMENTATIONS.items():
        if st.session_state.get(_on_key(name)):
            ops[name] = {p.name: float(st.session_state[_param_key(name, p.name)]) for p in spec.params}
    return AugmentConfig(ops)


def matching_preset(config: AugmentConfig) -> str | None:
    """Name of the preset equal to ``config``, if any."""
    for name, preset in PRESETS.items():
        if preset.to_dict() == config.to_dict():
            return name
    return None


def pick_image() -> np.ndarray | None:
    """A (PREVIEW_SIZE, PREVIEW_SIZE, 3) image from the dataset or an upload; None (with a message) otherwise."""
    source = st.radio("Image", ["From the dataset", "Upload an image"], key="aug_source", horizontal=True)
    if source == "Upload an image":
        upload = st.file_uploader(
            "A cell image (JPEG, PNG, BMP, TIFF)", type=["jpg", "jpeg", "png", "bmp", "tif", "tiff"], key="aug_upload"
        )
        if upload is None:
            st.info("Upload a single-cell image to see how augmentation changes it.")
            return None
        try:
            img = open_image(upload)
        except ImageError as exc:
            st.error(f"Cannot use this upload: {exc}")
            return None
        return np.asarray(img.resize((PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.BILINEAR))
    ds = dataset_or_error(
        get_settings().data_dir,
        "No dataset is configured (set HEMATO_DATA_DIR); upload an image instead.",
        " Upload an image instead.",
    )
    if ds is None:
        return None
    c1, c2, c3 = st.columns([2, 1, 1])
    label = c1.selectbox("Class", ds.classes, key="aug_class")
    paths = ds.frame.loc[ds.frame["label"] == label, "path"].tolist()
    if c3.button("Random cell", key="aug_random", width="stretch"):
        st.session_state["aug_index"] = int(np.random.default_rng().integers(1, len(paths) + 1))
    if st.session_state.get("aug_index", 1) > len(paths):
        st.session_state["aug_index"] = 1
    index = c2.number_input(f"Image (1–{len(paths):,})", 1, len(paths), 1, key="aug_index")
    try:
        return load_array(paths[int(index) - 1], PREVIEW_SIZE)
    except ImageError as exc:
        st.error(f"Cannot open this image: {exc}")
        return None


def _controls(spec: AugmentSpec, image: np.ndarray, seed: int) -> None:
    text, preview = st.columns([3, 1])
    with text:
        on = st.toggle(spec.label, key=_on_key(spec.name))
        for p in spec.params:
            st.slider(
                p.label,
                float(p.low),
                float(p.high),
                step=float(p.step),
                key=_param_key(spec.name, p.name),
                help=p.help or None,
                disabled=not on,
            )
        st.caption(f"**Why it helps:** {spec.why}  \n**When it hurts:** {spec.hurts}")
    with preview:
        params = {p.name: st.session_state[_param_key(spec.name, p.name)] for p in spec.params}
        if "p" in params:
            params["p"] = 1.0  # show the effect itself, not the coin flip
        small = np.asarray(Image.fromarray(image).resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR))
        st.image(apply_single(small, spec.name, params, seed), caption="alone", width="stretch")


def augmentation_controls(image: np.ndarray, seed: int) -> None:
    """One toggle, sliders, explanation and a single-augmentation preview per augmentation, grouped by kind."""
    for kind, title in KINDS.items():
        with st.expander(title, expanded=kind == "geometric"):
            for spec in AUGMENTATIONS.values():
                if spec.kind == kind:
                    with st.container(border=True):
                        _controls(spec, image, seed)


def preview_section(image: np.ndarray, config: AugmentConfig, n: int, seed: int) -> None:
    """The original and ``n`` draws of the composed pipeline (same seed → same images)."""
    draws = preview_grid(image, config, n, seed)
    with st.container(key="aug_preview"):
        columns = st.columns(4)
        cells = [(image, "original"), *((d, f"draw {i + 1}") for i, d in enumerate(draws))]
        for i, (picture, caption) in enumerate(cells):
            columns[i % 4].image(picture, caption=caption, width="stretch")
