"""Augmentation studio: see what each augmentation does to a cell, and what training will feed the model."""

import json

import streamlit as st

from hemato.ui.augment import (
    augmentation_controls,
    current_config,
    matching_preset,
    pick_image,
    preset_selector,
    preview_section,
)
from hemato.ui.common import setup_page
from hemato.vision.augment import PRESETS

setup_page("Augmentation studio", icon="🎛️")
st.caption(
    "Augmentation shows the model new versions of each training image, so it learns the cell rather than "
    "the pose, the lamp or the stain batch. The pipeline built here is the one training runs "
    "(`hemato/augment.py`): what you preview is what the model is trained on."
)

image = pick_image()
if image is None:
    st.stop()

controls, previews = st.columns([1, 1.15], gap="large")
with previews:
    preset = preset_selector()
    c1, c2 = st.columns(2)
    n = c1.slider("Random draws", 3, 15, 7, key="aug_n")
    seed = int(c2.number_input("Seed (same seed → same draws)", 0, 1_000_000, 0, key="aug_seed"))

with controls:
    st.subheader("Augmentations")
    augmentation_controls(image, seed)

config = current_config()
with previews:
    match = matching_preset(config)
    if match:
        st.success(f"These settings are the **{match}** preset that training offers.")
    else:
        st.info(f"Custom settings (started from **{preset}**). Training offers: {', '.join(PRESETS)}.")
    preview_section(image, config, n, seed)
    with st.expander("Pipeline as data"):
        st.code(json.dumps(config.to_dict(), indent=2), language="json")
