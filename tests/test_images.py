"""Decoding of image bytes (inference.images) on real photos and on bad input."""

import io

import numpy as np
import pytest
from PIL import Image

from inference.images import ImageDecodeError, decode_image
from tests.conftest import CARS, require


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo_bytes():
    return require(CARS / "kia_rio").glob("*.jpg").__next__().read_bytes()


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
