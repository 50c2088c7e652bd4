"""Image augmentations: one module for the Augmentation studio and for training.

What a student previews in the studio is exactly what the model is trained on: training calls
:func:`make_augmenter` with one of the :data:`PRESETS` (or a custom :class:`AugmentConfig`) and applies the
returned function to every training image.

Design: all geometric augmentations (flips, rotation, zoom, translation, shear, random crop) are composed into
one affine matrix and applied in a single PIL warp; all colour augmentations except stain jitter (brightness,
contrast, hue, saturation) are composed into one 3×3 matrix plus offset. That keeps the "standard" preset at a
few milliseconds per 224-px image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

Augmenter = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Rec. 601 luma weights: grey value used by contrast and saturation.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ParamSpec:
    """One numeric parameter of an augmentation, with the slider range the studio offers."""

    name: str
    label: str
    low: float
    high: float
    step: float
    default: float
    help: str = ""


@dataclass(frozen=True)
class AugmentSpec:
    """An augmentation's name, parameters and the teaching text shown beside its sliders."""

    name: str
    label: str
    kind: str  # "geometric", "colour" or "noise": the order they are applied in
    params: tuple[ParamSpec, ...]
    why: str
    hurts: str

    def defaults(self) -> dict[str, float]:
        """The parameter values used when the augmentation is switched on without settings."""
        return {p.name: p.default for p in self.params}


def _p(name: str, label: str, low: float, high: float, step: float, default: float, help: str = "") -> ParamSpec:
    return ParamSpec(name, label, low, high, step, default, help)


_PROB = "Probability that a drawn image gets this augmentation at all."

AUGMENTATIONS: dict[str, AugmentSpec] = {
    spec.name: spec
    for spec in (
        AugmentSpec(
            "hflip",
            "Horizontal flip",
            "geometric",
            (_p("p", "probability", 0.0, 1.0, 0.05, 0.5, _PROB),),
            "A cell has no left or right: mirrored cells are equally real, so the model learns shape, not pose.",
            "Harmless for isolated cells; it would hurt only if left/right carried meaning (text, arrows).",
        ),
        AugmentSpec(
            "vflip",
            "Vertical flip",
            "geometric",
            (_p("p", "probability", 0.0, 1.0, 0.05, 0.5, _PROB),),
            "Slides have no up or down either: doubles the poses seen for free.",
            "Same as horizontal flip: only hurts when orientation is part of the label.",
        ),
        AugmentSpec(
            "rotation",
            "Rotation",
            "geometric",
            (
                _p(
                    "max_degrees",
                    "max angle (°)",
                    0.0,
                    180.0,
                    5.0,
                    180.0,
                    "Angle drawn uniformly in ±max; 180 = 0–360°.",
                ),
            ),
            "Cells lie at any angle on a smear; full rotation teaches the nucleus shape whatever its orientation.",
            "Corners are filled with background colour; on crops where the cell touches the edge, parts get cut.",
        ),
        AugmentSpec(
            "zoom",
            "Zoom / scale",
            "geometric",
            (_p("max_change", "max scale change", 0.0, 0.5, 0.01, 0.1, "Scale drawn in [1-max, 1+max]."),),
            "Microscopes and crops differ in magnification; mild zoom makes the model tolerant to cell size.",
            "Cell size is itself a cue (lymphocytes are small, monocytes big): strong zoom blurs that cue.",
        ),
        AugmentSpec(
            "translate",
            "Translation",
            "geometric",
            (_p("max_fraction", "max shift (fraction of side)", 0.0, 0.4, 0.01, 0.08),),
            "Cells are not always centred; shifting teaches the model to look for the cell, not the centre.",
            "Large shifts push the cell out of frame, producing images whose label is no longer visible.",
        ),
        AugmentSpec(
            "shear",
            "Shear",
            "geometric",
            (_p("max_degrees", "max shear (°)", 0.0, 30.0, 1.0, 8.0),),
            "Mimics smear spreading and slight optical distortion, which deform cells a little.",
            "Strong shear produces squashed cells that never occur, teaching shapes the model will not meet.",
        ),
        AugmentSpec(
            "random_crop",
            "Random crop",
            "geometric",
            (_p("min_fraction", "min crop side (fraction)", 0.5, 1.0, 0.01, 0.85, "Crop side drawn in [min, 1]."),),
            "Cropping a random window and resizing it back shows the cell at slightly different framings.",
            "Small crops can cut away the cytoplasm or granules that define the class.",
        ),
        AugmentSpec(
            "brightness",
            "Brightness",
            "colour",
            (_p("max_delta", "max change (fraction of 255)", 0.0, 0.5, 0.01, 0.08),),
            "Lamp intensity and exposure vary between microscopes and days.",
            "Too strong washes out pale cytoplasm or makes the background look like a cell.",
        ),
        AugmentSpec(
            "contrast",
            "Contrast",
            "colour",
            (_p("max_change", "max contrast change", 0.0, 0.8, 0.01, 0.15, "Factor drawn in [1-max, 1+max]."),),
            "Camera gamma and staining intensity change contrast; the model should not depend on it.",
            "Low contrast hides granules (eosinophil vs neutrophil) that the label depends on.",
        ),
        AugmentSpec(
            "hue_saturation",
            "Hue / saturation",
            "colour",
            (
                _p("max_hue", "max hue shift (°)", 0.0, 90.0, 1.0, 4.0),
                _p("max_saturation", "max saturation change", 0.0, 0.8, 0.01, 0.15, "Factor in [1-max, 1+max]."),
            ),
            "Different stains and cameras tint the image; small hue/saturation jitter covers that.",
            "Stain colour is a real cue (eosinophil granules are orange-red): large hue shifts erase it.",
        ),
        AugmentSpec(
            "hed_jitter",
            "Stain (HED) jitter",
            "colour",
            (
                _p("sigma", "stain scale jitter", 0.0, 0.3, 0.005, 0.03, "Each stain channel scaled by 1±sigma."),
                _p("bias", "stain offset jitter", 0.0, 0.05, 0.001, 0.005),
            ),
            "Perturbs haematoxylin, eosin and DAB separately (Tellez et al. 2018): mimics lab-to-lab staining.",
            "Too strong and eosinophil granules lose their eosin colour, the very cue a haematologist uses.",
        ),
        AugmentSpec(
            "blur",
            "Gaussian blur",
            "noise",
            (
                _p("p", "probability", 0.0, 1.0, 0.05, 0.3, _PROB),
                _p("max_sigma", "max blur radius (px)", 0.0, 4.0, 0.1, 1.0),
            ),
            "Focus varies across a slide; mild blur makes the model robust to slightly defocused cells.",
            "Blurs granules and chromatin texture, which separate neutrophils from eosinophils and monocytes.",
        ),
        AugmentSpec(
            "gaussian_noise",
            "Gaussian noise",
            "noise",
            (
                _p("p", "probability", 0.0, 1.0, 0.05, 0.5, _PROB),
                _p("sigma", "max noise std (grey levels)", 0.0, 50.0, 1.0, 8.0),
            ),
            "Sensor noise differs between cameras; noise discourages reliance on pixel-exact texture.",
            "Strong noise looks like granules and can turn a lymphocyte's smooth cytoplasm into a 'granulocyte'.",
        ),
        AugmentSpec(
            "salt_pepper",
            "Salt-and-pepper noise",
            "noise",
            (
                _p("p", "probability", 0.0, 1.0, 0.05, 0.5, _PROB),
                _p("amount", "max fraction of pixels", 0.0, 0.2, 0.005, 0.02),
            ),
            "Simulates dead pixels and dust specks, so isolated bright/dark dots do not drive decisions.",
            "Not a real microscope artefact at high rates; too much trains on noise that never appears.",
        ),
    )
}

_ORDER = [name for kind in ("geometric", "colour", "noise") for name, s in AUGMENTATIONS.items() if s.kind == kind]


@dataclass
class AugmentConfig:
    """Which augmentations are on and their parameters: ``ops`` maps an augmentation name to its params."""

    ops: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ops) - AUGMENTATIONS.keys())
        if unknown:
            raise ValueError(f"Unknown augmentation(s) {unknown}; choose from {sorted(AUGMENTATIONS)}.")
        filled = {}
        for name in _ORDER:
            if name in self.ops:
                spec = AUGMENTATIONS[name]
                bad = sorted(set(self.ops[name]) - {p.name for p in spec.params})
                if bad:
                    raise ValueError(f"Augmentation {name!r} has no parameter(s) {bad}.")
                filled[name] = {**spec.defaults(), **{k: float(v) for k, v in self.ops[name].items()}}
        self.ops = filled

    def to_dict(self) -> dict[str, dict[str, float]]:
        """JSON-ready form (for model cards and run folders)."""
        return {name: dict(params) for name, params in self.ops.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> AugmentConfig:
        """Rebuild a config from :meth:`to_dict` output."""
        return cls({name: dict(params) for name, params in data.items()})


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "light": AugmentConfig({"hflip": {}, "vflip": {}, "rotation": {"max_degrees": 180.0}}),
    # Blood-cell microscopy: any pose, a little framing change, mild lamp/stain variation.
    "standard": AugmentConfig(
        {
            "hflip": {},
            "vflip": {},
            "rotation": {"max_degrees": 180.0},
            "zoom": {"max_change": 0.08},
            "translate": {"max_fraction": 0.06},
            "brightness": {"max_delta": 0.06},
            "contrast": {"max_change": 0.1},
            "hed_jitter": {"sigma": 0.04, "bias": 0.004},
        }
    ),
    # Towards other labs: BCCD-style crops show the cell up to 2-3x larger, blurrier and paler than PBC.
    "cross-lab": AugmentConfig(
        {
            "hflip": {},
            "vflip": {},
            "rotation": {"max_degrees": 180.0},
            "random_crop": {"min_fraction": 0.5},
            "brightness": {"max_delta": 0.1},
            "contrast": {"max_change": 0.25},
            "hue_saturation": {"max_hue": 6.0, "max_saturation": 0.3},
            "blur": {"p": 0.5, "max_sigma": 1.5},
        }
    ),
    "strong": AugmentConfig(
        {
            "hflip": {},
            "vflip": {},
            "rotation": {"max_degrees": 180.0},
            "zoom": {"max_change": 0.15},
            "translate": {"max_fraction": 0.1},
            "shear": {"max_degrees": 10.0},
            "random_crop": {"min_fraction": 0.8},
            "brightness": {"max_delta": 0.12},
            "contrast": {"max_change": 0.25},
            "hue_saturation": {"max_hue": 6.0, "max_saturation": 0.25},
            "hed_jitter": {"sigma": 0.06, "bias": 0.01},
            "blur": {"p": 0.3, "max_sigma": 1.2},
            "gaussian_noise": {"p": 0.5, "sigma": 8.0},
        }
    ),
}


def _uniform(rng: np.random.Generator, half_width: float) -> float:
    return float(rng.uniform(-half_width, half_width)) if half_width > 0 else 0.0


def _geometric_matrix(
    ops: Mapping[str, Mapping[str, float]], size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray | None:
    """Forward 3×3 affine (input → output pixel coordinates) of all geometric ops, or None for identity."""
    w, h = size
    cx, cy = w / 2.0, h / 2.0
    m = np.eye(3)

    def about_centre(a: np.ndarray) -> np.ndarray:
        to = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=float)
        back = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=float)
        return back @ a @ to

    touched = False
    if "random_crop" in ops:
        frac = float(rng.uniform(ops["random_crop"]["min_fraction"], 1.0))
        max_off_x, max_off_y = (1 - frac) * w / 2, (1 - frac) * h / 2
        ox, oy = _uniform(rng, max_off_x), _uniform(rng, max_off_y)
        # Zoom into the window centred at (cx+ox, cy+oy) so it fills the frame.
        m = np.array([[1 / frac, 0, cx - (cx + ox) / frac], [0, 1 / frac, cy - (cy + oy) / frac], [0, 0, 1]]) @ m
        touched = True
    if "hflip" in ops and rng.random() < ops["hflip"]["p"]:
        m = about_centre(np.diag([-1.0, 1.0, 1.0])) @ m
        touched = True
    if "vflip" in ops and rng.random() < ops["vflip"]["p"]:
        m = about_centre(np.diag([1.0, -1.0, 1.0])) @ m
        touched = True
    if "shear" in ops:
        s = math.tan(math.radians(_uniform(rng, ops["shear"]["max_degrees"])))
        m = about_centre(np.array([[1, s, 0], [0, 1, 0], [0, 0, 1]], dtype=float)) @ m
        touched = True
    if "zoom" in ops:
        z = 1.0 + _uniform(rng, ops["zoom"]["max_change"])
        m = about_centre(np.diag([z, z, 1.0])) @ m
        touched = True
    if "rotation" in ops:
        a = math.radians(_uniform(rng, ops["rotation"]["max_degrees"]))
        c, s = math.cos(a), math.sin(a)
        m = about_centre(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])) @ m
        touched = True
    if "translate" in ops:
        f = ops["translate"]["max_fraction"]
        m = np.array([[1, 0, _uniform(rng, f * w)], [0, 1, _uniform(rng, f * h)], [0, 0, 1]]) @ m
        touched = True
    return m if touched else None


def _border_colour(image: np.ndarray) -> tuple[int, int, int]:
    edges = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return tuple(int(v) for v in np.median(edges, axis=0))  # type: ignore[return-value]


def _warp(image: np.ndarray, forward: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    inverse = np.linalg.inv(forward)
    data = tuple(inverse[:2].ravel().tolist())
    out = Image.fromarray(image).transform(
        (w, h), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR, fillcolor=_border_colour(image)
    )
    return np.asarray(out)


def _hue_matrix(degrees: float) -> np.ndarray:
    """Rotation of RGB around the grey axis (the W3C ``hue-rotate`` filter matrix)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    return np.array(
        [
            [0.213 + c * 0.787 - s * 0.213, 0.715 - c * 0.715 - s * 0.715, 0.072 - c * 0.072 + s * 0.928],
            [0.213 - c * 0.213 + s * 0.143, 0.715 + c * 0.285 + s * 0.140, 0.072 - c * 0.072 - s * 0.283],
            [0.213 - c * 0.213 - s * 0.787, 0.715 - c * 0.715 + s * 0.715, 0.072 + c * 0.928 + s * 0.072],
        ],
        dtype=np.float32,
    )


def _stain_matrices() -> tuple[np.ndarray, np.ndarray, float]:
    from skimage.color import hed_from_rgb, rgb_from_hed

    return hed_from_rgb.astype(np.float32), rgb_from_hed.astype(np.float32), float(np.log(1e-6))


# log(max(v/255, 1e-6)) for every uint8 value: the optical-density step of skimage's rgb2hed as a lookup.
_LOG_LUT = np.log(np.maximum(np.arange(256, dtype=np.float64) / 255.0, 1e-6)).astype(np.float32)


def _hed_jitter(image: np.ndarray, sigma: float, bias: float, rng: np.random.Generator) -> np.ndarray:
    """Scale and shift the haematoxylin, eosin and DAB channels (Tellez et al. 2018).

    Uses skimage's colour-deconvolution matrices (``rgb2hed``/``hed2rgb``) but folds the round trip into one
    3×3 product in log space; unlike ``rgb2hed`` it does not clip negative stain values, so zero jitter
    returns the image unchanged.
    """
    hed_from_rgb, rgb_from_hed, log_adjust = _stain_matrices()
    alpha = rng.uniform(1 - sigma, 1 + sigma, size=3).astype(np.float32)
    beta = rng.uniform(-bias, bias, size=3).astype(np.float32)
    # stains = log(rgb)/log_adjust @ H; stains' = stains*alpha + beta; log(rgb') = stains' * log_adjust @ R
    mix = (hed_from_rgb * alpha) @ rgb_from_hed
    shift = (beta * log_adjust) @ rgb_from_hed
    log_rgb = np.take(_LOG_LUT, image).reshape(-1, 3) @ mix + shift
    np.exp(log_rgb, out=log_rgb)
    log_rgb *= 255.0
    return log_rgb.reshape(image.shape)


def _colour(image: np.ndarray, ops: Mapping[str, Mapping[str, float]], rng: np.random.Generator) -> np.ndarray:
    """Stain jitter, then hue/saturation, contrast and brightness as a single matrix and offset (float32 out)."""
    x = _hed_jitter(image, ops["hed_jitter"]["sigma"], ops["hed_jitter"]["bias"], rng) if "hed_jitter" in ops else None
    matrix = np.eye(3, dtype=np.float32)
    offset = np.zeros(3, dtype=np.float32)
    touched = False
    if "hue_saturation" in ops:
        sat = 1.0 + _uniform(rng, ops["hue_saturation"]["max_saturation"])
        saturation = sat * np.eye(3, dtype=np.float32) + (1 - sat) * np.tile(_LUMA, (3, 1))
        matrix = _hue_matrix(_uniform(rng, ops["hue_saturation"]["max_hue"])) @ saturation @ matrix
        touched = True
    if "contrast" in ops:
        factor = 1.0 + _uniform(rng, ops["contrast"]["max_change"])
        sample = (x if x is not None else image)[::4, ::4].reshape(-1, 3)
        grey_mean = float(sample.mean(axis=0) @ _LUMA)
        matrix = factor * matrix
        offset = factor * offset + (1 - factor) * grey_mean
        touched = True
    if "brightness" in ops:
        offset = offset + 255.0 * _uniform(rng, ops["brightness"]["max_delta"])
        touched = True
    if x is None:
        x = image.astype(np.float32)
    if touched:
        x = (x.reshape(-1, 3) @ matrix.T + offset).reshape(image.shape)
    return x


def _noise(x: np.ndarray, ops: Mapping[str, Mapping[str, float]], rng: np.random.Generator) -> np.ndarray:
    if "blur" in ops and rng.random() < ops["blur"]["p"]:
        radius = float(rng.uniform(0, ops["blur"]["max_sigma"]))
        if radius > 0:
            img = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
            x = np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    if "gaussian_noise" in ops and rng.random() < ops["gaussian_noise"]["p"]:
        sigma = float(rng.uniform(0, ops["gaussian_noise"]["sigma"]))
        x = x + sigma * rng.standard_normal(x.shape, dtype=np.float32)
    if "salt_pepper" in ops and rng.random() < ops["salt_pepper"]["p"]:
        amount = float(rng.uniform(0, ops["salt_pepper"]["amount"]))
        draw = rng.random(x.shape[:2], dtype=np.float32)
        x = np.array(x, dtype=np.float32, copy=True)
        x[draw < amount / 2] = 0.0
        x[(draw >= amount / 2) & (draw < amount)] = 255.0
    return x


def make_augmenter(config: AugmentConfig) -> Augmenter:
    """Build ``augment(image, rng) -> image`` for ``config``.

    The function takes and returns a ``uint8`` array of shape (H, W, 3) (same shape out) and draws all its
    randomness from ``rng``, so a seeded Generator reproduces the same images.
    """
    ops = {name: dict(params) for name, params in config.ops.items()}
    geometric = [n for n in ops if AUGMENTATIONS[n].kind == "geometric"]
    pixel = [n for n in ops if AUGMENTATIONS[n].kind != "geometric"]

    def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Expected an (H, W, 3) RGB image, got shape {image.shape}.")
        image = image.astype(np.uint8, copy=False)
        if geometric:
            forward = _geometric_matrix(ops, (image.shape[1], image.shape[0]), rng)
            if forward is not None:
                image = _warp(image, forward)
        if not pixel:
            return np.ascontiguousarray(image)
        x = _colour(image, ops, rng)
        x = _noise(x, ops, rng)
        np.clip(x + 0.5, 0, 255, out=x)
        return x.astype(np.uint8)

    return augment


def preview_grid(image: np.ndarray, config: AugmentConfig, n: int, seed: int) -> list[np.ndarray]:
    """``n`` random draws of the composed pipeline on ``image``, reproducible with ``seed``."""
    augment = make_augmenter(config)
    rng = np.random.default_rng(seed)
    return [augment(image, rng) for _ in range(n)]


def apply_single(image: np.ndarray, name: str, params: Mapping[str, float], seed: int) -> np.ndarray:
    """Apply one augmentation alone (the studio's per-augmentation preview)."""
    return make_augmenter(AugmentConfig({name: dict(params)}))(image, np.random.default_rng(seed))
