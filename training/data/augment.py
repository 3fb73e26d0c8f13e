"""albumentations policies applied to training images only.

They run on the cached, already resized ``uint8`` images, every epoch, in the
tf.data pipeline (``training.data.dataset.make_dataset``). Each change is one a
listing photo of the same car model plausibly shows:

- ``none``: identity.
- ``light``: horizontal flip; small shift/scale/rotation (+-6% shift, 0.9-1.1
  scale, +-8 degrees, 70% of images); brightness/contrast (+-20%, half of
  images) and hue/saturation/value jitter (30%).
- ``strong``: ``light``'s flip, then a larger affine change (+-10% shift,
  0.8-1.2 scale, +-12 degrees, shear +-5 degrees, 80%) or a perspective warp
  (one of the two); brightness/contrast +-30% (70%), colour jitter (40%),
  5% grayscale; one of Gaussian blur, motion blur or Gaussian noise (30%);
  JPEG recompression at quality 40-95 (30%, listing sites recompress); and
  1-4 cutout holes of 5-20% of each side (CoarseDropout; DeVries & Taylor 2017,
  "Improved Regularization of CNNs with Cutout"; 40%).

The share given after each step is its probability per image.
"""

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np

from training.config import POLICIES


def _light() -> list[A.BasicTransform]:
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.06, 0.06), rotate=(-8, 8), border_mode=cv2.BORDER_REPLICATE,
                 p=0.7),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=10, p=0.3),
    ]


def _strong() -> list[A.BasicTransform | A.BaseCompose]:
    return [
        A.HorizontalFlip(p=0.5),
        A.OneOf(
            [
                A.Affine(scale=(0.8, 1.2), translate_percent=(-0.1, 0.1), rotate=(-12, 12), shear=(-5, 5),
                         border_mode=cv2.BORDER_REPLICATE),
                A.Perspective(scale=(0.03, 0.08), border_mode=cv2.BORDER_REPLICATE),
            ],
            p=0.8,
        ),
        A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=0.7),
        A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.3, hue=0.05, p=0.4),
        A.ToGray(p=0.05),
        A.OneOf([A.GaussianBlur(sigma_limit=(0.3, 1.5)), A.MotionBlur(blur_limit=(3, 7)),
                 A.GaussNoise(std_range=(0.02, 0.08))], p=0.3),
        A.ImageCompression(quality_range=(40, 95), p=0.3),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.2), hole_width_range=(0.05, 0.2),
                        fill="random_uniform", p=0.4),
    ]


def build_augmentation(policy: str, seed: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """The albumentations pipeline of ``policy``.

    Args:
        policy: one of ``POLICIES``.
        seed: seeds albumentations' random generator.

    Returns:
        a callable mapping a ``uint8`` image ``(height, width, 3)`` to one of
        the same shape and dtype, or ``None`` for ``none``.

    Raises:
        ValueError: unknown policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown augmentation policy '{policy}'; known: {', '.join(POLICIES)}")
    if policy == "none":
        return None
    compose = A.Compose(_light() if policy == "light" else _strong(), seed=seed)
    return lambda image: compose(image=image)["image"]
