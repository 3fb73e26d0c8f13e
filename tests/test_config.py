"""The training config: stages, JSON/YAML files and presets, checkpointed stages (options over files: test_cli)."""

import json
from pathlib import Path

import pytest

from training.config import Stage, TrainConfig, read_config_file
from training.experiments.variants import load_variants
from training.fitting.stages import checkpointed_stages

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_stage_parsing_with_optional_batch_and_size():
    assert Stage.parse("finetune:12:1e-4:0.3") == Stage("finetune", 12, 1e-4, 0.3)
    assert Stage.parse("big:4:5e-5:1:16") == Stage("big", 4, 5e-5, 1.0, batch_size=16)
    assert Stage.parse("big:4:5e-5:1::288") == Stage("big", 4, 5e-5, 1.0, image_size=288)
    assert Stage.parse("big:4:5e-5:1:16:288") == Stage("big", 4, 5e-5, 1.0, 16, 288)
    for text in ("finetune:12:0.0001:0.3", "big:4:5e-05:1:16", "big:4:5e-05:1::288", "big:4:5e-05:1:16:288"):
        assert str(Stage.parse(text)) == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("head:3", "NAME:EPOCHS:LR:UNFREEZE"),
        ("head:1:2:3:4:5:6", "NAME:EPOCHS:LR:UNFREEZE"),
        ("head:three:1e-3:0", "invalid literal"),
        ("head:0:1e-3:0", "epochs >= 1"),
        ("head:1:1e-3:1.5", "unfreeze"),
        ("head:1:1e-3:0:0", "must be positive"),
    ],
)
def test_bad_stages_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        Stage.parse(text)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_round_trip(tmp_path, suffix):
    config = TrainConfig(
        data=["a", "b"], out="o", class_names=["x", "y"], backbone="MobileNetV2", alpha=0.35, optimizer="sgd",
        schedule="cyclic", loss="focal", augment="strong", class_weight="balanced", tensorboard=True,
        stages=[Stage("head", 2, 1e-3, 0.0), Stage("big", 1, 1e-5, 1.0, 8, 288)],
    )
    path = tmp_path / f"config{suffix}"
    config.save(path)
    assert TrainConfig.from_dict(read_config_file(path)) == config
    if suffix == ".yaml":
        assert "schedule: cyclic" in path.read_text()
    else:
        assert json.loads(path.read_text())["stages"][1]["image_size"] == 288


# The first release's model/training_config.json (data a string; no knob added since).
FIRST_RELEASE = """{"data": "../shared/data/cars-ru10", "out": "model", "backbone": "MobileNetV2", "alpha": 0.35,
 "weights": "../shared/weights/mobilenet_v2_0.35_224_imagenet_notop.weights.h5", "image_size": null,
 "batch_size": 32, "val_fraction": 0.2, "seed": 42, "dropout": 0.3, "label_smoothing": 0.1, "augment": "light",
 "schedule": "onecycle", "patience": 4, "train_bn": false,
 "stages": [{"name": "head", "epochs": 8, "learning_rate": 0.001, "unfreeze": 0.0},
            {"name": "finetune", "epochs": 12, "learning_rate": 0.0001, "unfreeze": 0.3}]}"""


def test_first_release_config_still_loads():
    config = TrainConfig.from_dict(json.loads(FIRST_RELEASE))
    assert config.data == ["../shared/data/cars-ru10"] and config.stages[1] == Stage("finetune", 12, 1e-4, 0.3)
    assert config.backbone == "MobileNetV2" and config.head_init == "probe"  # knobs added later take their defaults


def test_shipped_model_config_loads():
    config = TrainConfig.from_dict(json.loads((CONFIGS.parent / "model" / "training_config.json").read_text()))
    assert config.backbone == "EfficientNetLite0" and config.head_init == "probe" and config.deterministic


def test_every_preset_is_a_valid_config():
    """Presets are configs; variants files (experiments) have their base and every variant checked."""
    for path in CONFIGS.glob("*.yaml"):
        values = read_config_file(path)
        if "variants" in values:
            assert load_variants(path)[1]
        else:
            TrainConfig.from_dict({**values, "data": "d", "out": "o"})


def test_checkpoint_competition_is_limited_to_the_exported_size():
    def stages(*sizes):
        return TrainConfig(stages=[Stage(f"s{i}", 1, 1e-3, 0, image_size=size) for i, size in enumerate(sizes)])

    assert list(checkpointed_stages(stages(224, 224))) == [0, 1]
    assert list(checkpointed_stages(stages(224, 224, 288))) == [2]
    assert list(checkpointed_stages(stages(224, 288, 288))) == [1, 2]
    assert list(checkpointed_stages(stages(288, 224, 224))) == [1, 2]
