"""TTA views (inference.tta) on a real photo: shapes, dtypes and what each view shows."""

import numpy as np
import pytest

from inference.calibration import Calibration, mode_key
from inference.images import decode_image
from inference.tta import SERVED_VIEWS, VIEW_SETS, VIEWS, ZOOM_OUT_FRACTION, parse_views, tta_batch
from tests.conftest import CARS, SHIPPED_MODEL, require


@pytest.fixture(scope="module")
def photo():
    return decode_image(next(require(CARS / "mazda_3").glob("*.jpg")).read_bytes())


@pytest.mark.shared
def test_every_view_keeps_shape_and_dtype_so_views_stack(photo):
    batch = tta_batch(photo, tuple(VIEWS))
    assert batch.shape == (len(VIEWS), *photo.shape) and batch.dtype == np.uint8
    assert np.array_equal(batch[0], photo)
    assert all(not np.array_equal(view, photo) for view in batch[1:])  # every other view changes the pixels


@pytest.mark.shared
def test_hflip_twice_is_the_identity(photo):
    assert np.array_equal(VIEWS["hflip"](VIEWS["hflip"](photo)), photo)
    assert np.array_equal(VIEWS["hflip"](photo), photo[:, ::-1])


def test_crops_show_their_corner_resized_back():
    # Four flat quadrants, 100x160: a corner crop (90% of each side) starts in its own quadrant and ends in the
    # opposite one; resized back to 100x160, the quadrant border moves from 50/80 px to 50/90 and 80/144 of the view.
    image = np.zeros((100, 160, 3), np.uint8)
    image[:50, 80:], image[50:, :80], image[50:, 80:] = 60, 120, 180
    value = {"top_left": 0, "top_right": 60, "bottom_left": 120, "bottom_right": 180}
    opposite = {"top_left": "bottom_right", "top_right": "bottom_left", "bottom_left": "top_right",
                "bottom_right": "top_left"}
    for corner, own in value.items():
        view = VIEWS[f"crop_{corner}"](image)
        row, col = (0, -1) if corner.startswith("top") else (-1, 0), (0, -1) if corner.endswith("left") else (-1, 0)
        assert view.shape == image.shape and view.dtype == np.uint8
        assert view[row[0], col[0], 0] == own and view[row[1], col[1], 0] == value[opposite[corner]]
    top_left = VIEWS["crop_top_left"](image)
    assert top_left[54, 87, 0] == 0 and top_left[57, 90, 0] == 180  # border at row 55.6, column 88.9
    centre = VIEWS["crop_center"](image)
    assert centre[0, 0, 0] == 0 and centre[-1, -1, 0] == 180 and centre[48, 78, 0] == 0 and centre[51, 81, 0] == 180


@pytest.mark.shared
def test_zoom_out_shrinks_and_repeats_the_border(photo):
    flat = np.full((50, 70, 3), 77, np.uint8)
    assert np.array_equal(VIEWS["zoom_out"](flat), flat)
    zoomed = VIEWS["zoom_out"](photo)
    height, width = photo.shape[:2]
    top, left = (height - round(height * ZOOM_OUT_FRACTION)) // 2, (width - round(width * ZOOM_OUT_FRACTION)) // 2
    assert zoomed.shape == photo.shape and top > 0 and left > 0
    assert np.array_equal(zoomed[:top], np.broadcast_to(zoomed[top], zoomed[:top].shape))  # repeated top row
    assert np.array_equal(zoomed[:, :left], np.broadcast_to(zoomed[:, left : left + 1], zoomed[:, :left].shape))
    inner = zoomed[top : top + round(height * ZOOM_OUT_FRACTION), left : left + round(width * ZOOM_OUT_FRACTION)]
    assert abs(inner.mean() - photo.mean()) < 2  # the whole photo, shrunk


def test_named_sets_and_comma_lists_parse_and_unknown_names_fail():
    assert parse_views("flip") == ("original", "hflip") == VIEW_SETS["flip"]
    assert parse_views("original, zoom_out") == ("original", "zoom_out")
    assert len(parse_views("all")) == len(VIEWS)
    with pytest.raises(ValueError, match="known sets: none, flip"):
        parse_views("spin")
    with pytest.raises(KeyError, match="Unknown TTA view"):
        tta_batch(np.zeros((4, 4, 3), np.uint8), ("original", "rotate"))


def test_every_served_mode_is_calibrated_in_the_shipped_model():
    calibration = Calibration.load(SHIPPED_MODEL)
    for views in SERVED_VIEWS.values():
        assert calibration.test(views) is not None, f"no known-model test for {mode_key(views)}"
