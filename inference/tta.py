"""Test-time augmentation (TTA): fixed, deterministic views of one image.

The classifier runs all views of an image as one batch and averages their
probabilities (the usual Kaggle recipe; e.g. Simonyan & Zisserman 2015,
"Very Deep Convolutional Networks", sec. 3.2, average over flipped views).
"""

import numpy as np

# Each view maps an image (H, W, 3) to an array of the same shape, so that all
# views of one image stack into a single batch.
VIEWS = {
    "original": lambda image: image,
    "hflip": lambda image: image[:, ::-1],
}
DEFAULT_VIEWS = ("original", "hflip")


def tta_batch(image, views=DEFAULT_VIEWS):
    """Stack the TTA views of one image into a batch.

    Args:
        image: ``np.ndarray``, shape ``(height, width, 3)``, any dtype.
        views: names from :data:`VIEWS`, in batch order.

    Returns:
        ``np.ndarray`` of shape ``(len(views), height, width, 3)``, the dtype of
        ``image``.

    Raises:
        KeyError: a view name that is not in :data:`VIEWS`.
    """
    unknown = [name for name in views if name not in VIEWS]
    if unknown:
        raise KeyError(f"Unknown TTA view(s) {unknown}; known: {sorted(VIEWS)}")
    return np.stack([VIEWS[name](image) for name in views])
