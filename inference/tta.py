"""Test-time augmentation (TTA): fixed, deterministic views of one image.

The classifier runs all views of an image as one batch and averages their
probabilities (the usual Kaggle recipe; Simonyan & Zisserman 2015, "Very Deep
Convolutional Networks", sec. 3.2, average over flipped views; Krizhevsky et
al. 2012, "ImageNet Classification with Deep CNNs", sec. 4.1, the centre and
four corner crops).

Every view maps an image ``uint8 (height, width, 3)`` to an array of the same
shape and dtype, so that all views of one image stack into a single batch: crops are
resized back to the image's size and the zoomed-out view is padded back to it.
Resizing is Pillow's antialiased bilinear filter, as before the model
(``inference.images.resize``), not TensorFlow's: serving on LiteRT imports
no TensorFlow.
"""

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from inference.images import resize
from inference.predictor import Predictor

CROP_FRACTION = 0.9  # side of the crop views, as a share of the image's side
ZOOM_OUT_FRACTION = 0.9  # side of the shrunken image inside the zoom-out view


def _crop(vertical: str, horizontal: str) -> Callable[[np.ndarray], np.ndarray]:
    """A view: the ``CROP_FRACTION`` crop anchored at ``vertical`` (top,
    center, bottom) and ``horizontal`` (left, center, right), resized back."""
    anchors = {"top": 0.0, "left": 0.0, "center": 0.5, "bottom": 1.0, "right": 1.0}

    def view(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        crop_h, crop_w = max(1, round(height * CROP_FRACTION)), max(1, round(width * CROP_FRACTION))
        top = round((height - crop_h) * anchors[vertical])
        left = round((width - crop_w) * anchors[horizontal])
        return resize(image[top : top + crop_h, left : left + crop_w], (width, height))

    return view


def _zoom_out(image: np.ndarray) -> np.ndarray:
    """The image shrunk to ``ZOOM_OUT_FRACTION`` of its sides, centred, its
    border pixels repeated outwards (as the training augmentation pads)."""
    height, width = image.shape[:2]
    inner_h, inner_w = max(1, round(height * ZOOM_OUT_FRACTION)), max(1, round(width * ZOOM_OUT_FRACTION))
    top, left = (height - inner_h) // 2, (width - inner_w) // 2
    padding = ((top, height - inner_h - top), (left, width - inner_w - left), (0, 0))
    return np.pad(resize(image, (inner_w, inner_h)), padding, mode="edge")


def _mirror(image: np.ndarray) -> np.ndarray:
    """The image mirrored left to right, by Pillow: faster than NumPy's copy of a reversed view
    (docs/performance.md, "Settings chosen by measurement")."""
    return np.asarray(Image.fromarray(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT))


VIEWS = {
    "original": lambda image: image,
    "hflip": _mirror,
    "crop_center": _crop("center", "center"),
    "crop_top_left": _crop("top", "left"),
    "crop_top_right": _crop("top", "right"),
    "crop_bottom_left": _crop("bottom", "left"),
    "crop_bottom_right": _crop("bottom", "right"),
    "zoom_out": _zoom_out,
}
CORNERS = ("crop_top_left", "crop_top_right", "crop_bottom_left", "crop_bottom_right")

# Named sets of views, for the command line (``--tta-views NAME``).
VIEW_SETS = {
    "none": ("original",),
    "flip": ("original", "hflip"),
    "crops": ("original", "crop_center", *CORNERS),
    "scales": ("original", "crop_center", "zoom_out"),
    "all": tuple(VIEWS),
}
# The service's TTA modes, their one table: a request's ``tta`` option -> the views it runs.
# The API runs and reports them (app/api.py), carclf calibrate fits a known-model test for
# each (keyed by inference.calibration.mode_key), TensorFlowClassifier.warm_up runs each one's batch size.
SERVED_VIEWS = {False: VIEW_SETS["none"], True: VIEW_SETS["flip"]}
DEFAULT_VIEWS = SERVED_VIEWS[True]


def parse_views(text: str) -> tuple[str, ...]:
    """Views named by ``text``: a key of ``VIEW_SETS`` or view names
    joined by commas (e.g. ``original,hflip,zoom_out``).

    Returns:
        ``tuple[str]`` of view names.

    Raises:
        ValueError: an unknown set or view name (the message lists the known ones).
    """
    views = VIEW_SETS.get(text) or tuple(name.strip() for name in text.split(","))
    problem = _unknown_views(views)
    if problem:
        raise ValueError(f"{problem}; known sets: {', '.join(VIEW_SETS)}")
    return views


def _unknown_views(views: Sequence[str]) -> str | None:
    """A message naming the views that are not in ``VIEWS``, or ``None``."""
    unknown = [name for name in views if name not in VIEWS]
    return f"Unknown TTA view(s) {unknown}; known views: {', '.join(VIEWS)}" if unknown else None


def tta_batch(image: np.ndarray, views: Sequence[str] = DEFAULT_VIEWS) -> np.ndarray:
    """Stack the TTA views of one image into a batch.

    Args:
        image: ``uint8`` array ``(height, width, 3)``, RGB.
        views: names from ``VIEWS``, in batch order.

    Returns:
        ``uint8`` array ``(len(views), height, width, 3)``.

    Raises:
        KeyError: a view name that is not in ``VIEWS``.
    """
    problem = _unknown_views(views)
    if problem:
        raise KeyError(problem)
    return np.stack([VIEWS[name](image) for name in views])


def predict_views(predictor: Predictor, image: np.ndarray,
                  views: Sequence[str] = DEFAULT_VIEWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A predictor's outputs for one image, each averaged over its TTA views: the one
    prediction path of the service and the training tools.

    Args:
        predictor: an ``inference.predictor.Predictor``.
        image: ``uint8`` array ``(height, width, 3)`` of its ``image_size``, RGB.
        views: names from ``VIEWS``, run as one batch; ``("original",)`` turns TTA off.

    Returns:
        ``(logits, probabilities, features)``, ``float32`` arrays
        ``(num_classes,)``, ``(num_classes,)`` and ``(F,)``; the probabilities sum to 1.
    """
    return tuple(outputs.mean(axis=0) for outputs in predictor.predict(tta_batch(image, views)))
