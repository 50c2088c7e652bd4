"""Saliency maps (Grad-CAM family, SmoothGrad) through tf-keras-vis: the only module that imports it.

Every function returns plain NumPy: a (H, W) float32 heatmap in [0, 1] at the size of the image it was given.
The caller's model is never modified: gradient methods run on a separate model object that shares the
caller's layers but ends in linear logits (a copy of the softmax head without the softmax), cached per model.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from plotly.colors import sample_colorscale, unlabel_rgb

from hemato import jobs
from hemato.data.imaging import load_array, resize_image
from hemato.files import atomic_path
from hemato.vision.models import (
    _model_cache,
    cam_layers,
    compiled_forward,
    last_conv_layer,
    layer_model,
    load_model_once,
    model_input_size,
)

if TYPE_CHECKING:
    import keras

METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcam_plus_plus": "Grad-CAM++",
    "scorecam": "Faster Score-CAM",
    "smoothgrad": "SmoothGrad",
    "layercam": "LayerCAM",
}
SLOW_METHODS = frozenset({"scorecam", "smoothgrad"})
HEAD_LAYER = "predictions"
DEFAULT_SCORECAM_MAX_N = 10
DEFAULT_SMOOTH_SAMPLES = 16


def linear_model(model: keras.Model) -> keras.Model:
    """A new model sharing ``model``'s layers whose output is the pre-softmax logits (cached per model).

    tf-keras-vis' ``ReplaceToLinear`` changes the output layer's activation in place, so it is only ever applied
    to this separate object, whose head is a fresh ``Dense`` holding a copy of the head's weights.
    """
    import keras

    store = _model_cache(model)
    if "linear" not in store:
        names = [layer.name for layer in model.layers]
        head = model.get_layer(HEAD_LAYER) if HEAD_LAYER in names else model.layers[-1]
        logits = keras.layers.Dense(int(head.units), activation=None, name="logits")
        output = logits(head.input)
        logits.set_weights(head.get_weights())
        store["linear"] = keras.Model(model.inputs, output, name=f"{model.name}_logits")
    return store["linear"]


def _visualizer(model: keras.Model, method: str) -> Any:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    store = _model_cache(model)
    key = f"vis:{method}"
    if key not in store:
        # Score-CAM too gets logits: tf-keras-vis applies the softmax to the model's outputs itself.
        kind = {
            "gradcam": Gradcam,
            "gradcam_plus_plus": GradcamPlusPlus,
            "layercam": Layercam,
            "smoothgrad": Saliency,
            "scorecam": Scorecam,
        }[method]
        store[key] = kind(linear_model(model), model_modifier=ReplaceToLinear(), clone=False)
    return store[key]


def _seed(image: np.ndarray, size: int) -> np.ndarray:

    return resize_image(image, size).astype(np.float32)[None]


def _to_unit(heatmap: Any) -> np.ndarray:
    arr = np.asarray(heatmap, dtype=np.float32)
    while arr.ndim > 2:
        arr = arr[0]
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(arr)
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def _zoom_to(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upsample a CAM to the model input exactly as tf-keras-vis does (scipy, linear, corners aligned)."""
    from scipy.ndimage import zoom

    return zoom(cam, (height / cam.shape[0], width / cam.shape[1]), order=1)


def resize_heatmap(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a (h, w) map to (height, width), clipped to [0, 1]."""
    if heatmap.shape == (height, width):
        return heatmap.astype(np.float32)
    img = Image.fromarray(heatmap.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


def explain(
    model: keras.Model,
    image: np.ndarray,
    method: str = "gradcam",
    target_class: int | None = None,
    layer: str | None = None,
    **opts: Any,
) -> np.ndarray:
    """A saliency heatmap of ``image`` for one class.

    Args:
        model: A HematoVision classifier (never modified).
        image: uint8 (H, W, 3) image of any size; resized to the model input inside.
        method: A key of :data:`METHODS`.
        target_class: Class index to explain; ``None`` explains the predicted class.
        layer: Layer for CAM methods; ``None`` uses :func:`hemato.vision.models.last_conv_layer`.
        **opts: ``max_n`` (Score-CAM, default 10), ``smooth_samples`` / ``smooth_noise`` (SmoothGrad).

    Returns:
        float32 (H, W) heatmap in [0, 1] matching ``image``'s height and width.

    Raises:
        ValueError: Unknown method, layer or class index.
    """
    from tf_keras_vis.utils.scores import CategoricalScore

    if method not in METHODS:
        raise ValueError(f"Unknown explanation method {method!r}; choose one of {', '.join(METHODS)}.")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"Expected an (H, W, 3) image, got shape {image.shape}.")
    seed = _seed(image, model_input_size(model))
    n_classes = int(model.output.shape[-1])
    if target_class is not None and not 0 <= int(target_class) < n_classes:
        raise ValueError(f"Class index {target_class} is out of range; the model has {n_classes} classes.")
    layer = layer or last_conv_layer(model)
    if method != "smoothgrad" and layer not in cam_layers(model):
        raise ValueError(f"Layer {layer!r} is not a convolution-map layer of {model.name}; pick one of cam_layers().")
    if method == "gradcam" and not opts.get("reference", False):
        cam = _fast_gradcam(model, layer)(seed, -1 if target_class is None else int(target_class))
        cam = _zoom_to(cam, seed.shape[1], seed.shape[2])
        return resize_heatmap(_to_unit(cam), image.shape[0], image.shape[1])
    if target_class is None:
        target_class = int(np.argmax(np.asarray(_forward(model)(seed))[0]))
    score = CategoricalScore([int(target_class)])
    vis = _visualizer(model, method)
    common = {"penultimate_layer": layer, "seek_penultimate_conv_layer": False}
    if method == "scorecam":
        max_n = min(int(opts.get("max_n", DEFAULT_SCORECAM_MAX_N)), int(model.get_layer(layer).output.shape[-1]))
        with contextlib.redirect_stdout(io.StringIO()):  # silences the progress bar of its model.predict
            cam = vis(score, seed, max_N=max_n, batch_size=16, **common)
    elif method == "smoothgrad":
        samples = int(opts.get("smooth_samples", DEFAULT_SMOOTH_SAMPLES))
        cam = vis(score, seed, smooth_samples=samples, smooth_noise=float(opts.get("smooth_noise", 0.2)))
    else:
        cam = vis(score, seed, **common)
    return resize_heatmap(_to_unit(cam), image.shape[0], image.shape[1])


def _fast_gradcam(model: keras.Model, layer: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """Grad-CAM as one compiled graph per (model, layer): same maths as tf-keras-vis' ``Gradcam``, ~3× faster.

    tf-keras-vis rebuilds a Keras model and runs eagerly on every call (~0.35 s for MobileNetV2 at 224 on 2
    cores); the app needs Grad-CAM interactive, so this path keeps the gradient model and traces it once.
    ``explain(..., reference=True)`` runs tf-keras-vis instead, and a test checks the two agree.
    """
    import keras
    import tensorflow as tf

    store = _model_cache(model)
    key = f"fast_gradcam:{layer}"
    if key not in store:
        lin = linear_model(model)
        grad_model = keras.Model(lin.inputs, [lin.get_layer(layer).output, lin.output])
        size = model_input_size(model)
        specs = [tf.TensorSpec((1, size, size, 3), tf.float32), tf.TensorSpec((), tf.int32)]

        @tf.function(input_signature=specs)
        def run(x: Any, target: Any) -> Any:
            with tf.GradientTape() as tape:
                maps, logits = grad_model(x, training=False)
                chosen = tf.where(target < 0, tf.cast(tf.argmax(logits[0]), tf.int32), target)
                score = tf.gather(logits[0], chosen)
            grads = tape.gradient(score, maps)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(maps * weights, axis=-1))[0]

        store[key] = lambda x, target: np.asarray(run(tf.constant(x), tf.constant(target, tf.int32)))
    return store[key]


def _forward(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """The model's compiled forward pass (cached per model), for picking the predicted class cheaply."""
    store = _model_cache(model)
    if "forward" not in store:
        store["forward"] = compiled_forward(model)
    return store["forward"]


def explain_all(
    model: keras.Model,
    image: np.ndarray,
    target_class: int | None = None,
    layer: str | None = None,
    methods: list[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Heatmaps of every method (or ``methods``) for one image; ``progress(done, total, label)`` after each."""
    chosen = methods or list(METHODS)
    maps: dict[str, np.ndarray] = {}
    for i, method in enumerate(chosen):
        maps[method] = explain(model, image, method, target_class, layer)
        if progress is not None:
            progress(i + 1, len(chosen), METHODS[method])
    return maps


def saliency_file(out_dir: Path, method: str) -> Path:
    """Where the ``saliency`` job stores one method's heatmap (a float32 ``.npy``)."""
    return Path(out_dir) / f"{method}.npy"


def stored_heatmaps(out_dir: Path, methods: list[str]) -> dict[str, np.ndarray] | None:
    """The heatmaps of every method in ``methods`` stored in ``out_dir``, or None while any is missing."""
    files = [saliency_file(out_dir, m) for m in methods]
    if not all(f.is_file() for f in files):
        return None
    return {m: np.load(f) for m, f in zip(methods, files, strict=True)}


@jobs.job("saliency", label="Saliency maps")
def saliency_job(
    ctx: jobs.JobContext,
    model_dir: str,
    image_path: str,
    methods: list[str],
    out_dir: str,
    target_class: int | None = None,
    layer: str | None = None,
) -> dict[str, Any]:
    """The ``saliency`` job: slow (or all) methods' heatmaps of one image, one ``.npy`` per method in ``out_dir``."""
    ctx.set_phase("loading the model")
    model, _ = load_model_once(Path(model_dir))
    image = load_array(image_path)
    for i, method in enumerate(methods):
        ctx.progress(i, len(methods), "maps", f"computing {METHODS.get(method, method)}")
        heatmap = explain(model, image, method, target_class, layer)
        with atomic_path(saliency_file(Path(out_dir), method)) as tmp:
            np.save(tmp, heatmap)
        ctx.check_cancel()
    ctx.progress(len(methods), len(methods), "maps", "finished")
    ctx.result_path = out_dir
    return {"methods": methods}


# Colour maps offered for heatmaps, by the name shown to users and plotly's colour scale (sampled to a 256-entry table).
COLORSCALES = {"jet": "Jet", "hot": "Hot", "viridis": "Viridis", "gray": "Greys_r"}
COLORMAPS = tuple(COLORSCALES)


@functools.cache
def _colormap_lut(name: str) -> np.ndarray:
    """A 256×3 uint8 lookup table of one of :data:`COLORMAPS` (plotly's colour scales)."""
    if name not in COLORSCALES:
        raise ValueError(f"Unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}.")
    colours = sample_colorscale(COLORSCALES[name], np.linspace(0.0, 1.0, 256).tolist())
    return np.array([unlabel_rgb(c) for c in colours]).round().astype(np.uint8)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A [0, 1] heatmap as a uint8 (H, W, 3) colour image."""
    index = (np.clip(np.nan_to_num(heatmap), 0.0, 1.0) * 255).round().astype(np.uint8)
    return _colormap_lut(colormap)[index]


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Blend a coloured heatmap over ``image`` (heatmap resized to the image if needed); uint8 (H, W, 3)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    base = image[..., :3].astype(np.float32)
    height, width = base.shape[:2]
    heat = resize_heatmap(np.asarray(heatmap, dtype=np.float32), height, width)
    color = colorize(heat, colormap).astype(np.float32)
    alpha = float(np.clip(alpha, 0.0, 1.0))
    return np.clip((1 - alpha) * base + alpha * color, 0, 255).astype(np.uint8)


def maximize_activation(
    model: keras.Model,
    units: list[int],
    layer: str | None = None,
    steps: int = 100,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Synthesise the input that most excites each unit (tf-keras-vis ``ActivationMaximization``).

    Args:
        model: A HematoVision classifier (never modified).
        units: Filter indices of ``layer``, or class indices when ``layer`` is None (class-model images).
        layer: A 4-D layer whose filters to visualise; None for the output classes (pre-softmax logits).
        steps: Gradient-ascent iterations (all units are optimised together as one batch).
        progress: ``progress(step_done, steps)`` after every iteration.
        seed: Random seed of the starting noise.

    Returns:
        uint8 array (len(units), S, S, 3) at the model's input size.

    Raises:
        ValueError: No units, or a unit index beyond the layer's channels.
    """
    import tensorflow as tf
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.activation_maximization.callbacks import Callback
    from tf_keras_vis.utils.scores import CategoricalScore

    if not units:
        raise ValueError("Choose at least one unit to visualise.")
    if layer is None:
        target = linear_model(model)
    else:
        if layer not in cam_layers(model):
            raise ValueError(f"Layer {layer!r} is not a convolution-map layer of {model.name}.")
        target = layer_model(model, layer)
    n_units = int(target.output.shape[-1])
    if max(units) >= n_units or min(units) < 0:
        raise ValueError(f"Unit indices must be in 0..{n_units - 1}; got {units}.")

    class _Progress(Callback):
        def __call__(self, i: int, *args: Any, **kwargs: Any) -> None:
            if progress is not None:
                progress(i + 1, steps)

    size = model_input_size(model)
    start = tf.random.stateless_uniform((len(units), size, size, 3), seed=(seed, 0), minval=96.0, maxval=160.0)
    vis = ActivationMaximization(target, clone=False)
    result = vis(
        CategoricalScore([int(u) for u in units]),
        seed_input=start,
        input_range=(0, 255),
        steps=int(steps),
        callbacks=[_Progress()],
    )
    return np.clip(np.asarray(result), 0, 255).astype(np.uint8)
