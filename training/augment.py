"""albumentations policies applied to training images only.

``light``: horizontal flip, small shift/scale/rotation, brightness/contrast
and hue/saturation jitter -- the changes a listing photo of the same car model
plausibly shows. ``none``: identity.
"""

import albumentations as A
import cv2

POLICIES = ("light", "none")


def build_augmentation(policy, seed):
    """The albumentations pipeline of ``policy``.

    Args:
        policy: one of :data:`POLICIES`.
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
    compose = A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.06, 0.06), rotate=(-8, 8), border_mode=cv2.BORDER_REPLICATE, p=0.7),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=10, p=0.3),
        ],
        seed=seed,
    )
    return lambda image: compose(image=image)["image"]
