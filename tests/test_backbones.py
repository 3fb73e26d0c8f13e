"""Backbone registry and weights resolution: clear errors, never a stack of warnings."""

import socket

import pytest

from tests.conftest import MOBILENET_WEIGHTS, require
from training.backbones.catalog import BACKBONES, WeightsUnavailableError, build_backbone, get_spec


def online():
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_registry_covers_efficientnet_family_and_mobilenet():
    assert {f"EfficientNetB{i}" for i in range(8)} | {"EfficientNetV2S", "MobileNetV2"} <= set(BACKBONES)
    assert get_spec("EfficientNetB3").input_size == 300 and get_spec("EfficientNetV2S").input_size == 384


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ValueError, match="Known: .*EfficientNetB0"):
        get_spec("ResNet9000")


@pytest.mark.shared
def test_local_mobilenet_weights_load():
    backbone = build_backbone("MobileNetV2", str(require(MOBILENET_WEIGHTS)), 96, alpha=0.35)
    assert backbone.output_shape[-1] == 1280 and backbone.count_params() == 410_208


def test_missing_weights_file_is_named():
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_backbone("MobileNetV2", "/no/such/file.weights.h5", 96, alpha=0.35)


@pytest.mark.shared
def test_weights_of_another_architecture_are_refused_in_one_line():
    with pytest.raises(WeightsUnavailableError, match="does not fit EfficientNetB0") as caught:
        build_backbone("EfficientNetB0", str(require(MOBILENET_WEIGHTS)), 64)
    assert "\n" not in str(caught.value)


def test_alpha_is_refused_for_other_backbones():
    with pytest.raises(ValueError, match="alpha applies to MobileNetV2 only"):
        build_backbone("EfficientNetB0", "none", 64, alpha=0.5)


def test_offline_imagenet_download_says_so_and_names_the_path_option(tmp_path, monkeypatch):
    if online():
        pytest.skip("this machine can reach the Keras weights server, so the offline error cannot occur")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached copy to fall back on
    with pytest.raises(WeightsUnavailableError) as caught:
        build_backbone("EfficientNetB0", "imagenet", 64)
    message = str(caught.value)
    assert "Cannot download ImageNet weights for EfficientNetB0" in message and "--weights PATH" in message
    assert "\n" not in message
