"""Model building, ImageNet weights, saving and loading.

Every model is one **flat** functional graph: raw RGB pixels in [0, 255] → the backbone's own
preprocessing (a layer inside the graph, so training and inference can never disagree) → backbone
layers → head. tf-keras-vis can explain any of its layers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hemato.files import atomic_path, atomic_write

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"


@dataclass(frozen=True)
class Backbone:
    """What the app knows about one architecture."""

    key: str
    label: str
    default_size: int
    preprocessing: str
    weights_file: str | None
    feature_layer: str
    description: str


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(
        key="mobilenet_v2",
        label="MobileNetV2 (transfer learning)",
        default_size=224,
        preprocessing="mobilenet_v2: scale to [-1, 1]",
        weights_file="mobilenet_v2_1.0_224_imagenet.weights.h5",
        feature_layer="out_relu",
        description="Light ImageNet backbone; fast on a laptop CPU. The default.",
    ),
    "vgg16": Backbone(
        key="vgg16",
        label="VGG16 (transfer learning)",
        default_size=224,
        preprocessing="vgg16: RGB→BGR, subtract ImageNet mean",
        weights_file="vgg16_imagenet_notop.weights.h5",
        feature_layer="block5_pool",
        description="Classic deep backbone; accurate features, about 12× slower than MobileNetV2 on a CPU.",
    ),
    "small_cnn": Backbone(
        key="small_cnn",
        label="Small CNN from scratch",
        default_size=128,
        preprocessing="scale to [0, 1]",
        weights_file=None,
        feature_layer="features",
        description="Four conv blocks trained from random weights: the 'why transfer learning' baseline.",
    ),
}


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could be found neither locally nor online."""


class ModelLoadError(RuntimeError):
    """A saved model is missing, corrupt or not a HematoVision model."""


@dataclass
class ModelCard:
    """The JSON written beside every saved model."""

    backbone: str
    classes: list[str]
    input_size: int
    preprocessing: str
    weights: str
    data_source: str = ""
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise to indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build from a parsed JSON dict, ignoring unknown keys."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def get_backbone(key: str) -> Backbone:
    """Look up a backbone by key, with a clear error for unknown names."""
    try:
        return BACKBONES[key]
    except KeyError:
        raise ValueError(f"Unknown backbone {key!r}; choose one of {', '.join(BACKBONES)}.") from None


def local_weights_path(backbone: str, weights_dir: Path | None) -> Path | None:
    """The local ImageNet weights file for ``backbone`` if present in ``weights_dir``."""
    spec = get_backbone(backbone)
    if spec.weights_file is None or weights_dir is None:
        return None
    path = Path(weights_dir) / spec.weights_file
    return path if path.is_file() else None


def _register_layers() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="hemato")
    class CaffePreprocess(keras.layers.Layer):
        """VGG16's preprocessing: RGB→BGR and ImageNet mean subtraction, inside the graph."""

        def call(self, inputs: Any) -> Any:
            mean = keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=inputs.dtype)
            return keras.ops.flip(inputs, axis=-1) - mean

    return CaffePreprocess


_CAFFE: type | None = None


def _caffe_layer(**kwargs: Any) -> Any:
    global _CAFFE
    if _CAFFE is None:
        _CAFFE = _register_layers()
    return _CAFFE(**kwargs)


def register_custom_layers() -> None:
    """Make HematoVision's custom layers known to Keras before deserialising a model."""
    _caffe_layer()


def _copy_weights_by_name(source: keras.Model, target: keras.Model) -> int:
    copied = 0
    source_layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        match = source_layers.get(layer.name)
        if match is not None and layer.weights and len(match.weights) == len(layer.weights):
            layer.set_weights(match.get_weights())
            copied += 1
    return copied


def _imagenet_reference(backbone: str, path: Path) -> keras.Model:
    import keras

    if backbone == "mobilenet_v2":
        ref = keras.applications.MobileNetV2(weights=None, include_top=True)
    else:
        ref = keras.applications.VGG16(weights=None, include_top=False)
    ref.load_weights(str(path))
    return ref


def _backbone_graph(backbone: str, x: Any, weights: str | None) -> keras.Model:
    import keras

    app = keras.applications.MobileNetV2 if backbone == "mobilenet_v2" else keras.applications.VGG16
    return app(include_top=False, weights=weights, input_tensor=x)


def build_model(
    backbone: str,
    classes: list[str] | int,
    input_size: int | None = None,
    weights: str | None = "imagenet",
    weights_dir: Path | None = None,
    dropout: float = 0.2,
    fine_tune_layers: int = 0,
) -> tuple[keras.Model, str]:
    """Build a flat classifier for ``classes``.

    Args:
        backbone: ``mobilenet_v2``, ``vgg16`` or ``small_cnn``.
        classes: Class names (or their number).
        input_size: Square input side; defaults to the backbone's.
        weights: ``"imagenet"`` (local file first, then Keras' download) or ``None`` for random weights.
        weights_dir: Folder holding local ImageNet weight files.
        dropout: Dropout before the classification layer.
        fine_tune_layers: Backbone layers (from the top) left trainable; 0 freezes the backbone.

    Returns:
        ``(model, weights_source)`` where ``weights_source`` says where the weights came from.

    Raises:
        WeightsUnavailableError: ImageNet weights were asked for and cannot be had; offer random weights.
    """
    import keras

    spec = get_backbone(backbone)
    size = input_size or spec.default_size
    n_classes = classes if isinstance(classes, int) else len(classes)
    if n_classes < 2:
        raise ValueError("A classifier needs at least two classes.")
    inputs = keras.Input((size, size, 3), name="image")
    if backbone == "small_cnn":
        features, source = _small_cnn(inputs), "random init (trained from scratch)"
        body = None
    else:
        if backbone == "mobilenet_v2":
            x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
        else:
            x = _caffe_layer(name="preprocess")(inputs)
        body, source = _load_backbone(backbone, x, weights, weights_dir)
        features = keras.layers.GlobalAveragePooling2D(name="features")(body.output)
    x = keras.layers.Dropout(dropout, name="head_dropout")(features)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"hemato_{backbone}")
    if body is not None:
        set_trainable(model, fine_tune_layers)
    return model, source


def _load_backbone(backbone: str, x: Any, weights: str | None, weights_dir: Path | None) -> tuple[Any, str]:
    if weights is None:
        return _backbone_graph(backbone, x, None), "random init"
    local = local_weights_path(backbone, weights_dir)
    if local is not None:
        body = _backbone_graph(backbone, x, None)
        copied = _copy_weights_by_name(_imagenet_reference(backbone, local), body)
        if copied == 0:
            raise WeightsUnavailableError(f"{local} holds no weights matching {backbone}'s layers.")
        return body, f"imagenet (local file {local.name})"
    try:
        return _backbone_graph(backbone, x, "imagenet"), "imagenet (downloaded by Keras)"
    except Exception as exc:  # any failure here means the same thing to the user
        spec = get_backbone(backbone)
        raise WeightsUnavailableError(
            f"ImageNet weights for {spec.label} are not available: no {spec.weights_file} in "
            f"{weights_dir or 'HEMATO_WEIGHTS_DIR (not set)'} and the download failed ({type(exc).__name__}). "
            "Set HEMATO_WEIGHTS_DIR to a folder holding the file, connect to the internet, "
            "or train from random weights / the small CNN instead."
        ) from exc


def _small_cnn(inputs: Any) -> Any:
    import keras

    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(inputs)
    for i, filters in enumerate((32, 64, 128, 256), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    return keras.layers.GlobalAveragePooling2D(name="features")(x)


def backbone_layers(model: keras.Model) -> list[Any]:
    """Layers between the preprocessing layer and the head (the pretrained part)."""
    names = [layer.name for layer in model.layers]
    start = names.index("preprocess") + 1 if "preprocess" in names else 1
    end = names.index("features") if "features" in names else len(names)
    return model.layers[start:end]


def set_trainable(model: keras.Model, fine_tune_layers: int) -> None:
    """Freeze the backbone except its top ``fine_tune_layers`` layers; batch norm always stays frozen.

    Frozen batch norm runs in inference mode with the pretrained statistics: what fine-tuning needs.
    """
    import keras

    body = backbone_layers(model)
    cut = len(body) - max(0, fine_tune_layers)
    for i, layer in enumerate(body):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= cut and not is_bn


def train_from_scratch(model: keras.Model) -> None:
    """Make every layer trainable, batch norm included: a randomly initialised network has nothing to keep."""
    for layer in model.layers:
        layer.trainable = True


def feature_extractor(model: keras.Model) -> keras.Model:
    """The sub-graph from raw image to pooled features (shares weights with ``model``)."""
    import keras

    return keras.Model(model.input, model.get_layer("features").output, name=f"{model.name}_features")


def last_conv_layer(model: keras.Model) -> str:
    """Name of the last non-pooling layer with a 4-D output (the default Grad-CAM layer)."""
    for layer in reversed(backbone_layers(model) or model.layers):
        if "pool" not in layer.name and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"{model.name} has no convolutional layer.")


def software_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on, for the model card."""
    import platform

    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}


def save_model(model: keras.Model, card: ModelCard, out_dir: Path) -> Path:
    """Write ``model.keras`` and its ``model_card.json`` into ``out_dir`` atomically; return the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    card.versions = card.versions or software_versions()
    with atomic_path(out_dir / MODEL_FILE) as tmp_model:
        model.save(tmp_model)
    atomic_write(out_dir / CARD_FILE, card.to_json())
    return out_dir


def read_card(model_dir: Path) -> ModelCard:
    """Read a model card without importing TensorFlow."""
    path = Path(model_dir) / CARD_FILE
    try:
        return ModelCard.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ModelLoadError(f"{model_dir} has no {CARD_FILE}; it is not a HematoVision model folder.") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelLoadError(f"{path} is damaged ({exc}); retrain the model or restore the file.") from exc


def load_model(model_dir: Path) -> tuple[keras.Model, ModelCard]:
    """Load a saved model (safe mode) and its card.

    Raises:
        ModelLoadError: The folder, card or model file is missing or corrupt; the message says what to do.
    """
    import keras

    model_dir = Path(model_dir)
    card = read_card(model_dir)
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; retrain the model (Train page or `python -m hemato train`).")
    register_custom_layers()
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # any failure here means the same thing to the user
        raise ModelLoadError(
            f"{path} could not be loaded ({type(exc).__name__}: {str(exc)[:200]}); "
            "the file is corrupt or from an incompatible version. Retrain it or pick another model."
        ) from exc
    return model, card


@functools.lru_cache(maxsize=2)
def _load_model_version(model_dir: str, key: str) -> tuple[keras.Model, ModelCard]:
    return load_model(Path(model_dir))


def load_model_once(model_dir: Path) -> tuple[keras.Model, ModelCard]:
    """:func:`load_model`, kept per model version in this process (job workers reuse it; at most two are kept).

    The model is shared: never train or change it.
    """
    return _load_model_version(str(Path(model_dir).resolve()), model_key(model_dir))


def list_models(models_dir: Path) -> list[tuple[Path, ModelCard | None]]:
    """Model folders under ``models_dir`` with their cards (``None`` for a damaged card)."""
    found = []
    if not Path(models_dir).is_dir():
        return found
    for sub in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()):
        if (sub / CARD_FILE).exists() or (sub / MODEL_FILE).exists():
            try:
                found.append((sub, read_card(sub)))
            except ModelLoadError:
                found.append((sub, None))
    return found


_CACHE: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}


def _model_cache(model: keras.Model) -> dict[str, Any]:
    """Per-model store of derived objects, dropped when the model is garbage-collected."""
    key = id(model)
    entry = _CACHE.get(key)
    if entry is None or entry[0]() is not model:
        store: dict[str, Any] = {}
        _CACHE[key] = (weakref.ref(model, lambda _ref, k=key: _CACHE.pop(k, None)), store)
        return store
    return entry[1]


def layer_model(model: keras.Model, layer: str) -> keras.Model:
    """A cached sub-model from the image input to ``layer``'s output (shares the caller's weights)."""
    import keras

    store = _model_cache(model)
    key = f"layer_model:{layer}"
    if key not in store:
        store[key] = keras.Model(model.inputs, model.get_layer(layer).output, name=f"{model.name}_{layer}")
    return store[key]


def cam_layers(model: keras.Model) -> list[str]:
    """Names of the layers a CAM can be computed on (4-D outputs after preprocessing), input to output."""
    return [layer.name for layer in backbone_layers(model) if len(layer.output.shape) == 4]


def model_input_size(model: keras.Model) -> int:
    """The square input side of ``model``."""
    return int(model.input_shape[1])


def model_key(model_dir: Path) -> str:
    """The one key of a saved model: changes whenever its model file is rewritten (path, size, mtime).

    Every cache of something derived from a model (evaluations, TFLite exports, neuron images, loaded models in
    the app) is keyed by it.
    """
    path = (Path(model_dir) / MODEL_FILE).resolve()
    try:
        stat = path.stat()
        identity = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    except FileNotFoundError:
        identity = f"{path}|missing"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def compiled_forward(model: keras.Model, input_size: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The model's inference call compiled once (one trace for every batch size), returning numpy float32.

    ``model.predict`` spends 100–300 ms per call on set-up; every forward pass of the app goes through this.
    """
    import tensorflow as tf

    size = input_size or model_input_size(model)
    spec = tf.TensorSpec((None, size, size, 3), tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda batch: np.array(forward(tf.constant(batch, tf.float32)), dtype=np.float32)
