"""Decoding of image bytes into RGB pixel arrays, with Pillow.

The same function decodes training photos and uploads, so the model sees
identically decoded pixels in both (EXIF orientation applied, RGB).
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000

# The only Pillow decoders an upload can reach (JPEG includes the multi-picture
# JPEGs of phone cameras, which Pillow then names MPO). Everything else (TIFF,
# EPS via Ghostscript, PSD, ICO...) is refused before any decoder runs: less
# attack surface on a public service. No HEIC: with pillow-heif, a one-byte
# change to a 64x48 file's header made libheif decode 64x16777280 pixels, so
# the pixel limit cannot be checked before decoding (README.md, "Limits").
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
FORMAT_NAMES = "JPEG, PNG, WebP, BMP or GIF"

# decode_image() enforces its own, lower pixel limit from the header; Pillow's
# warning between its two ceilings would only be noise (set once, at import,
# since warning filters are process-wide and not thread-safe to toggle).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# What Pillow raises on malformed files (OSError covers "truncated" and
# "cannot identify"; the others come from plugins parsing bad headers).
_DECODER_ERRORS = (OSError, ValueError, SyntaxError)


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image.

    Attributes:
        code: stable machine-readable reason: ``empty_file``, ``not_an_image``,
            ``too_many_pixels`` or ``corrupt_image``.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def decode_image(data, max_pixels=DEFAULT_MAX_PIXELS, min_size=None):
    """Decode encoded image bytes (one of :data:`FORMATS`) to RGB.

    The pixel count is checked from the header, before any pixel is decoded,
    so decompression bombs are refused cheaply. EXIF orientation is applied;
    grayscale, palette, CMYK, RGBA (alpha dropped) and 16-bit images become
    8-bit RGB; animated images give their first frame.

    Args:
        data: the encoded file, ``bytes``.
        max_pixels: largest accepted ``width * height``.
        min_size: optional ``(width, height)`` the caller will resize to.
            JPEGs are then decoded at the smallest power-of-two reduction that
            still covers it (Pillow's draft mode, in the DCT), which is much
            faster for large photos; any image still at least twice as large
            is then shrunk by the largest integer factor that still covers it
            (Pillow's ``reduce``, box filter), so a 40-megapixel PNG does not
            reach the model at full size.

    Returns:
        ``np.ndarray`` of dtype ``uint8`` and shape ``(height, width, 3)``.

    Raises:
        ImageDecodeError: empty, not an image in an allowed format, too many
            pixels, or corrupt.
    """
    if not data:
        raise ImageDecodeError("empty_file", "The file is empty.")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageDecodeError("not_an_image", f"The file is not a {FORMAT_NAMES} image.") from None
    except Image.DecompressionBombError:  # Pillow's own ceiling, twice Image.MAX_IMAGE_PIXELS
        raise ImageDecodeError("too_many_pixels", f"The image has more than {max_pixels} pixels.") from None
    except _DECODER_ERRORS as error:
        raise ImageDecodeError("corrupt_image", f"The image header could not be read: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_many_pixels", f"The image has {width}x{height} pixels; the limit is {max_pixels} pixels."
        )
    try:
        if min_size is not None and image.format in ("JPEG", "MPO"):
            image.draft("RGB", min_size)
        image = _to_rgb(ImageOps.exif_transpose(image))
        if min_size is not None:
            factor = min(image.width // min_size[0], image.height // min_size[1])
            if factor >= 2:
                image = image.reduce(factor)
        return np.asarray(image, dtype=np.uint8)
    except _DECODER_ERRORS as error:
        raise ImageDecodeError("corrupt_image", f"The image could not be decoded: {error}") from None


def resize(pixels, size):
    """Resize RGB pixels to exactly ``size``, with Pillow's bilinear filter.

    Shrinking widens the filter by the reduction factor (antialiasing), as
    ``tf.image.resize(antialias=True)`` does: on the 172 validation photos of
    the shipped model the two differ by at most 1 grey level, and Pillow is
    about 8 times faster (``benchmarks/bare_model.py`` prints its time).

    Args:
        pixels: ``uint8`` array ``(height, width, 3)``.
        size: ``(width, height)`` in pixels, Pillow's order.

    Returns:
        ``uint8`` array ``(size[1], size[0], 3)``.
    """
    if pixels.shape[1::-1] == tuple(size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))


def _to_rgb(image):
    """Convert any Pillow mode to 8-bit RGB (16-bit modes are scaled, not clipped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 1.0
        image = Image.fromarray(np.clip(pixels * scale, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")
