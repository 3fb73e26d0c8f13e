"""Decoding of image bytes into RGB pixel arrays, with Pillow.

The same function decodes training photos and uploads, so the model sees
identically decoded pixels in both (EXIF orientation applied, RGB).
"""

import io
import threading
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000

# Decoding memory: a JPEG with a ``min_size`` is decoded at reduced size (draft
# mode: a 40-megapixel photo becomes about 0.6 megapixels in the DCT); other
# formats are decoded at full size, 3-4 bytes per pixel plus one conversion,
# before they can be shrunk. So decodes over LARGE_DECODE_PIXELS (counted
# after draft mode) take one of LARGE_DECODE_SLOTS per process: at most two
# large images are in memory at once, however many requests bring them; the
# others wait their turn (docs/reliability.md: 16 concurrent 16-megapixel
# PNGs add at most 2 decodes' worth of memory).
LARGE_DECODE_PIXELS = 4_000_000
LARGE_DECODE_SLOTS = 2
_LARGE_DECODES = threading.BoundedSemaphore(LARGE_DECODE_SLOTS)
# Modes Image.reduce() shrinks to the same result as after conversion to RGB.
_REDUCIBLE = ("L", "RGB")

# The only Pillow decoders an upload can reach (JPEG includes the multi-picture
# JPEGs of phone cameras, which Pillow then names MPO). Everything else (TIFF,
# EPS via Ghostscript, PSD, ICO...) is refused before any decoder runs: less
# attack surface on a public service. No HEIC: with pillow-heif, a one-byte
# change to a 64x48 file's header made libheif decode 64x16777280 pixels, so
# the pixel limit cannot be checked before decoding (docs/api.md).
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

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: tuple[int, int] | None = None,
                 max_full_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (one of ``FORMATS``) to RGB.

    The pixel count is checked from the header, before any pixel is decoded,
    so decompression bombs are refused cheaply; decodes over
    ``LARGE_DECODE_PIXELS`` run at most ``LARGE_DECODE_SLOTS`` at a
    time per process (the others wait). EXIF orientation is applied;
    grayscale, palette, CMYK, RGBA (alpha dropped) and 16-bit images become
    8-bit RGB; animated images give their first frame.

    Args:
        data: the encoded file, ``bytes``.
        max_pixels: largest accepted ``width * height``.
        max_full_pixels: largest ``width * height`` of an image decoded at
            full size (every format but JPEG with ``min_size``: they cost
            3-4 bytes per pixel, twice while converted); ``None``: ``max_pixels``.
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
        full_limit = max_pixels if max_full_pixels is None else max_full_pixels
        if image.format not in ("JPEG", "MPO") or min_size is None:
            _check_full_size(image, full_limit)
        if image.width * image.height <= LARGE_DECODE_PIXELS:
            return _decode(image, min_size)
        with _LARGE_DECODES:
            return _decode(image, min_size)
    except _DECODER_ERRORS as error:
        raise ImageDecodeError("corrupt_image", f"The image could not be decoded: {error}") from None


def _check_full_size(image: Image.Image, limit: int) -> None:
    width, height = image.size
    if width * height > limit:
        raise ImageDecodeError(
            "too_many_pixels", f"The {image.format} image has {width}x{height} pixels; the limit for images "
                               f"other than JPEG (decoded at full size) is {limit} pixels."
        )


def _decode(image: Image.Image, min_size: tuple[int, int] | None) -> np.ndarray:
    """Decode the opened ``image`` to RGB ``uint8 (height, width, 3)``: turned upright, then
    shrunk toward ``min_size`` while still in its decoded mode when ``Image.reduce``
    takes it, so that a large image is held at full size once (twice when turned or
    converted), never in the copies a conversion of the full image would make."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if min_size is not None:
        if image.mode not in _REDUCIBLE:
            image = _to_rgb(image)
        factor = min(image.width // min_size[0], image.height // min_size[1])
        if factor >= 2:
            image = image.reduce(factor)
    return np.asarray(_to_rgb(image), dtype=np.uint8)


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
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
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (16-bit modes are scaled, not clipped;
    in integers, 5 bytes per pixel at most, as a 16-bit bomb is decoded at full size)."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.uint32)
        pixels *= 255
        pixels //= 65535
        image = Image.fromarray(pixels.astype(np.uint8), mode="L")
    elif image.mode == "I":
        pixels = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if pixels.max() > 255 else 1.0
        image = Image.fromarray(np.clip(pixels * scale, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")
