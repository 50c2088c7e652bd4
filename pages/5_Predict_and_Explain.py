"""Predict & Explain: classify cell images, see why (saliency), look at layers and neurons, and at ImageNet's view."""

import streamlit as st

from hemato.ui import explain as ui
from hemato.ui.common import model_picker, setup_page
from hemato.vision.models import model_key

setup_page("Predict & Explain", icon="🔬")
st.caption(
    "Upload cell images (or pick some from the dataset) to get the model's prediction, then look inside: which "
    "pixels drove the decision, what each layer and neuron responds to, and what the ImageNet network saw."
)

model_dir = model_picker("predict_model")
images = ui.image_input("predict_input")
if not images:
    st.info("Upload one or more cell images, or pick images from the dataset, to start.")
    st.stop()

loaded = ui.load(model_dir) if model_dir is not None else None
if loaded is None:
    st.warning(
        "Predictions and explanations need a trained model: run `make run` (it builds the default model) or train "
        "one on the Train page. Meanwhile, here is what the pretrained ImageNet network sees."
    )
    ui.imagenet_view(images[0], "predict_imagenet_only")
    st.stop()

model, card, predictor = loaded
model_key = model_key(model_dir)
probs = ui.predict_images(predictor, model_key, images)

names = [img.name for img in images]
current_name = st.selectbox("Image to explain", names, key="predict_current") if len(images) > 1 else names[0]
current = images[names.index(current_name)]
current_probs = probs[names.index(current_name)]

predict_tab, saliency_tab, layers_tab, neurons_tab, imagenet_tab = st.tabs(
    ["Prediction", "Saliency", "Layers", "Neurons", "What the pretrained network sees"]
)
with predict_tab:
    ui.show_predictions(images, probs, card.classes, "predict_results", predictor.backend)
with saliency_tab:
    opts = ui.saliency_controls(model, card.classes, "predict_saliency")
    ui.saliency_view(model, model_dir, model_key, current, card.classes, current_probs, opts, "predict_saliency")
    st.subheader("All methods side by side")
    ui.all_methods_grid(model_dir, model_key, current, opts, "predict_grid")
    st.subheader("Two models side by side")
    ui.compare_models((st.session_state.get("chosen_model", ""), model_dir), current, opts, "predict_compare")
with layers_tab:
    ui.layer_views(model, current, "predict_layers")
with neurons_tab:
    ui.neuron_views(model, model_dir, card.classes, current, "predict_neurons")
with imagenet_tab:
    ui.imagenet_view(current, "predict_imagenet")
