"""HematoVision landing page: what the app is, who it is for, and what it has to work with."""

import streamlit as st

from hemato.ui.common import app_status, page_links, setup_page

setup_page("HematoVision")
st.markdown(
    "Learn to tell **white blood cells** apart, and look inside the convolutional networks that do it. "
    "Built for **medical students** (practise on real cells and compare yourself with the model), "
    "**instructors** (train and explain models live in class) and **researchers** "
    "(saliency maps, per-class errors, cross-lab checks)."
)

status = app_status()
st.subheader("Status")
data_col, weights_col, models_col = st.columns(3)

with data_col, st.container(border=True):
    st.markdown("**Dataset**")
    ds = status.dataset
    if ds.error:
        st.error(ds.error)
    else:
        st.success(f"{ds.name}: {ds.n_images:,} images, {len(ds.classes)} classes")
        st.caption(", ".join(ds.classes))
        if ds.splits:
            st.caption(" · ".join(f"{name} {count:,}" for name, count in ds.splits.items()))
        if ds.n_excluded:
            st.caption(f"{ds.n_excluded} images marked excluded by the split file (duplicates).")
        st.caption(f"`{ds.path}`")

with weights_col, st.container(border=True):
    st.markdown("**ImageNet weights (offline)**")
    for w in status.weights:
        if not w.needs_weights:
            continue
        if w.local_file:
            st.success(f"{w.label}: available")
        else:
            st.warning(f"{w.label}: no local file; Keras will try to download it")

with models_col, st.container(border=True):
    st.markdown("**Trained models**")
    if not status.models:
        st.info("No trained model yet. Start the app with the README's run command to build the default one.")
    for path, card in status.models:
        if card is None:
            st.warning(f"{path.name}: damaged model card")
        else:
            accuracy = card.metrics.get("test_accuracy")
            score = f", test accuracy {accuracy:.1%}" if isinstance(accuracy, float) else ""
            st.write(f"`{path.name}`: {card.backbone}, {len(card.classes)} classes{score}")

st.subheader("Pages")
page_links()
