"""Decoding of image bytes (inference.images) on real photos and on bad input."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from inference.images import ImageDecodeError, decode_image
from tests.conftest import CARS, require
from tests.helpers import encode


@pytest.fixture(scope="module")
def photo_bytes():
    return require(CARS / "kia_rio").glob("*.jpg").__next__().read_bytes()


@pytest.mark.shared
def test_real_jpeg_decodes_to_rgb_uint8(photo_bytes):
    pixels = decode_image(photo_bytes)
    width, height = Image.open(io.BytesIO(photo_bytes)).size
    assert pixels.shape == (height, width, 3) and pixels.dtype == np.uint8
    assert pixels.std() > 10  # a real photo, not a blank frame


def test_draft_mode_decodes_large_jpeg_at_reduced_size_but_not_below_min_size():
    big = encode(Image.new("RGB", (1600, 1200), (200, 30, 30)), "JPEG")
    pixels = decode_image(big, min_size=(224, 224))
    assert 224 <= pixels.shape[0] < 1200 and 224 <= pixels.shape[1] < 1600


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    pixels = decode_image(encode(Image.new(mode, (40, 30)), fmt))
    assert pixels.shape == (30, 40, 3) and pixels.dtype == np.uint8


def test_16_bit_image_is_scaled_not_clipped():
    image = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert decode_image(encode(image, "PNG")).min() == 255


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    pixels = decode_image(encode(Image.new("RGB", (60, 20)), "JPEG", exif=exif))
    assert pixels.shape[:2] == (60, 20)


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty_file"),
        (b"just some text, renamed car.jpg", "not_an_image"),
        (b"%PDF-1.4\n1 0 obj << >> endobj\n", "not_an_image"),
    ],
)
def test_non_images_are_refused_with_a_code(data, code):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert caught.value.code == code


@pytest.mark.shared
def test_truncated_jpeg_is_corrupt(photo_bytes):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(photo_bytes[: len(photo_bytes) // 3])
    assert caught.value.code == "corrupt_image"


def test_decompression_bomb_refused_from_header():
    bomb = encode(Image.new("1", (12000, 12000)), "PNG")  # 144 Mpx, a few hundred KB
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(bomb, max_pixels=40_000_000)
    assert caught.value.code == "too_many_pixels"


def gradient(size=(64, 48)):
    """A small RGB test card (gradients, so that mutated decodes differ from blank)."""
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    return Image.fromarray(np.dstack([x, y, 255 - x]).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_every_allowed_format_decodes(fmt):
    pixels = decode_image(encode(gradient(), fmt))
    assert pixels.shape == (48, 64, 3) and pixels.dtype == np.uint8 and pixels.std() > 20


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (20, 10), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    pixels = decode_image(buffer.getvalue())
    assert pixels.shape == (10, 20, 3) and pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "EPS"])
def test_formats_outside_the_allowlist_are_refused_before_decoding(fmt):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(encode(gradient((32, 32)), fmt))
    assert caught.value.code == "not_an_image"


# Property tests on the decoding path: whatever the bytes, decode_image either
# returns RGB uint8 pixels within the pixel limit or raises ImageDecodeError
# with a known code; nothing else (no Pillow exception type leaks out).
FUZZ_MAX_PIXELS = 4_000_000
CODES = {"empty_file", "not_an_image", "too_many_pixels", "corrupt_image"}


def fuzz_seeds():
    """Valid files to mutate: a real photo (when ../shared is here) and each allowed format."""
    seeds = {fmt: encode(gradient(), fmt) for fmt in ("PNG", "GIF", "WEBP", "BMP")}
    if CARS.exists():
        smallest = min((CARS / "kia_rio").glob("*.jpg"), key=lambda path: path.stat().st_size)
        seeds["JPEG"] = smallest.read_bytes()
    else:
        seeds["JPEG"] = encode(gradient(), "JPEG")
    return seeds


SEEDS = fuzz_seeds()


def assert_decodes_or_refuses(data):
    try:
        pixels = decode_image(data, max_pixels=FUZZ_MAX_PIXELS, min_size=(224, 224))
    except ImageDecodeError as error:
        assert error.code in CODES and str(error)
    else:
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        assert 0 < pixels.shape[0] * pixels.shape[1] <= FUZZ_MAX_PIXELS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_escape_as_another_error(data):
    assert_decodes_or_refuses(data)


@settings(max_examples=400, deadline=None)
@given(
    fmt=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 4096)),
)
def test_mutated_headers_never_escape_as_another_error(fmt, edits, cut):
    data = bytearray(SEEDS[fmt])
    for position, value in edits:  # overwrite header bytes (markers, sizes, chunk lengths)
        if position < len(data):
            data[position] = value
    assert_decodes_or_refuses(bytes(data if cut is None else data[:cut]))


def test_large_png_is_reduced_but_still_covers_min_size():
    pixels = decode_image(encode(gradient((2000, 1000)), "PNG"), min_size=(224, 224))
    assert pixels.shape == (250, 500, 3)  # factor 4: 1000 // 224
    assert decode_image(encode(gradient((400, 300)), "PNG"), min_size=(224, 224)).shape == (300, 400, 3)
