"""Tiny real training runs (a few steps on a dozen photos) through the CLI,
then the exported SavedModel loaded without project code and served by the app."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from inference.savedmodel import TensorFlowClassifier
from inference.tta import predict_views
from tests.conftest import MOBILENET_WEIGHTS, TINY_CLASSES, ready_app, require
from tests.helpers import carclf, carclf_error
from training.config import TrainConfig
from training.data.dataset import load_image, load_samples, make_dataset, split_by_group
from training.fitting.checkpoints import RunState
from training.fitting.probe import feature_extractor, fit_linear_probe, fit_projection, head_weights
from training.model import FEATURES_LAYER, PROJECTION_LAYER, build_classifier

TINY = ["--batch-size", "4", "--val-fraction", "0.25", "--patience", "1"]
STAGES = ["--stage", "head:1:1e-3:0", "--stage", "finetune:1:1e-4:0.5"]


def mobilenet(out, *roots):
    """Flags of a tiny MobileNetV2 run on ``roots`` into ``out``."""
    data = [flag for root in roots for flag in ("--data", str(root))]
    return [*data, "--out", str(out), "--backbone", "MobileNetV2", "--alpha", "0.35",
            "--weights", str(require(MOBILENET_WEIGHTS)), *TINY]


@pytest.fixture(scope="module")
def mobilenet_model(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("mobilenet")
    carclf("train", *mobilenet(out, tiny_dataset), "--image-size", "96", *STAGES)
    return out


@pytest.mark.shared
def test_mobilenet_run_writes_savedmodel_config_history_and_metrics(mobilenet_model, tiny_dataset):
    files = {path.name for path in mobilenet_model.iterdir()}
    assert {"saved_model.pb", "variables", "training_config.json", "history.json", "metrics.json",
            "calibration.json", "calibration.npz", "model.tflite", "metadata.json", "litert_parity.json",
            "model.onnx", "onnx_parity.json"} <= files
    for parity_file in ("litert_parity.json", "onnx_parity.json"):
        parity = json.loads((mobilenet_model / parity_file).read_text())
        assert parity["photos"] == 3 and parity["top1_agreement"] == 1 and parity["max_probability_difference"] < 1e-4
    config = TrainConfig.from_dict(json.loads((mobilenet_model / "training_config.json").read_text()))
    assert config.backbone == "MobileNetV2" and config.alpha == 0.35 and config.image_size == 96
    assert [stage.name for stage in config.stages] == ["head", "finetune"]
    history = json.loads((mobilenet_model / "history.json").read_text())
    assert [len(stage["val_accuracy"]) for stage in history] == [1, 1]
    metrics = json.loads((mobilenet_model / "metrics.json").read_text())
    assert metrics["train_images"] + metrics["validation_images"] == 12
    assert 0 <= metrics["accuracy"] <= 1 and metrics["tta_views"] == ["original", "hflip"]
    # Epoch 0 is the linear probe the head started from (head_init probe, the default).
    accuracies = [history[0]["start_val_accuracy"]] + [stage["val_accuracy"][0] for stage in history]
    first_best = accuracies.index(max(accuracies))
    assert metrics["kept_epoch"] == {"epoch": first_best, "stage": ["linear-probe", "head", "finetune"][first_best],
                                     "val_accuracy": round(max(accuracies), 4)}


@pytest.mark.shared
def test_same_command_and_seed_give_the_same_model(tiny_dataset, tmp_path):
    """Deterministic ops and augmentation drawn in order: two runs, identical outputs."""
    outputs = []
    for run in ("a", "b"):
        carclf("train", *mobilenet(tmp_path / run, tiny_dataset), "--image-size", "64", "--augment", "strong",
               "--stage", "head:2:1e-2:0", "--stage", "finetune:1:1e-3:0.5")
        classifier = TensorFlowClassifier(tmp_path / run)
        outputs.append(classifier.predict(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), np.uint8)))
    for first, second in zip(*outputs):
        np.testing.assert_array_equal(first, second)


@pytest.mark.shared
def test_an_interrupted_run_goes_on_where_it_left_off(tiny_dataset, tmp_path, monkeypatch, capsys):
    """Interrupted (Ctrl-C) at the end of epoch 3 of 4, the same command goes on from the last backup
    (epoch 2): no second linear probe, epochs 3 and 4 only, and the history holds every epoch."""
    flags = [*mobilenet(tmp_path, tiny_dataset), "--image-size", "64", "--patience", "5",
             "--stage", "head:1:1e-3:0", "--stage", "finetune:3:1e-4:0.5"]
    record = RunState.record_epoch

    def interrupted_at_epoch_3(self, epoch, logs):
        record(self, epoch, logs)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunState, "record_epoch", interrupted_at_epoch_3)
    with pytest.raises(SystemExit):  # click's answer to Ctrl-C: "Aborted!", exit status 1
        carclf("train", *flags)
    assert capsys.readouterr().err.strip().endswith("Aborted!")
    assert (tmp_path / "checkpoints" / "run.json").is_file() and not (tmp_path / "saved_model.pb").exists()
    monkeypatch.undo()
    carclf("train", *flags)
    printed = capsys.readouterr().out
    assert "Resuming the interrupted run" in printed and "(1 stage(s) finished)" in printed
    assert "Linear probe" not in printed and "Epoch 2/4" not in printed
    assert "Epoch 3/4" in printed and "Epoch 4/4" in printed and "training images/s; about" in printed
    history = json.loads((tmp_path / "history.json").read_text())
    assert [len(stage["val_accuracy"]) for stage in history] == [1, 3] and "start_val_accuracy" in history[0]
    assert not (tmp_path / "checkpoints").exists()  # removed once the model is exported


@pytest.mark.shared
def test_early_stopping_says_when_it_stopped_and_which_epoch_it_kept(tiny_dataset, tmp_path, capsys):
    carclf("train", *mobilenet(tmp_path, tiny_dataset), "--image-size", "64", "--stage", "head:6:1e-9:0")
    history = json.loads((tmp_path / "history.json").read_text())[0]
    printed = capsys.readouterr().out
    # A learning rate of 1e-9 changes nothing: no gain after epoch 1, patience 1 stops at epoch 2, and no
    # epoch beats the linear probe the head started from, which is kept.
    assert history["stopped_early"] == {"epoch": 2, "best_epoch": 1}
    assert "Stage 'head' stopped early at epoch 2 of 6" in printed
    assert f"Kept epoch 0 (stage 'linear-probe', val_accuracy {history['start_val_accuracy']:.4f})" in printed


@pytest.mark.shared
def test_savedmodel_loads_with_tensorflow_alone(mobilenet_model, tmp_path):
    script = f"""
import json, sys
sys.path = [p for p in sys.path if p not in ("", ".")]
import numpy as np, tensorflow as tf
model = tf.saved_model.load({str(mobilenet_model)!r})
facts = model.signatures["metadata"]()
out = model.signatures["serving_default"](images=tf.zeros([2, 300, 200, 3], tf.uint8))
print(json.dumps({{"labels": [l.decode() for l in facts["labels"].numpy()],
                   "size": facts["image_size"].numpy().tolist(),
                   "shape": out["probabilities"].shape.as_list(),
                   "sums": out["probabilities"].numpy().sum(axis=1).tolist(),
                   "logits": out["logits"].shape.as_list(),
                   "features": out["features"].shape.as_list()}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["labels"] == ["kia_rio", "lada_kalina", "mazda_3"] and facts["size"] == [96, 96]
    assert facts["shape"] == [2, 3] and facts["logits"] == [2, 3] and facts["features"] == [2, 1280]
    assert np.allclose(facts["sums"], 1, atol=1e-5)


@pytest.mark.shared
def test_app_serves_the_freshly_trained_model(mobilenet_model, tiny_dataset):
    client = ready_app({"MODEL_DIR": str(mobilenet_model)}).test_client()
    photo = next((tiny_dataset / "mazda_3").glob("*.jpg"))
    with open(photo, "rb") as handle:
        answer = client.post("/predict", data={"file": (handle, photo.name), "top_k": "3"})
    assert answer.status_code == 200
    labels = [p["label"] for p in answer.json["predictions"]]
    assert sorted(labels) == ["kia_rio", "lada_kalina", "mazda_3"]


@pytest.mark.shared
def test_efficientnet_tiny_run_from_random_init(tiny_dataset, tmp_path, capsys):
    carclf("train", "--data", tiny_dataset, "--out", tmp_path, "--backbone", "EfficientNetB0", "--weights", "none",
           "--image-size", "64", *TINY, "--stage", "head:1:1e-3:0", "--stage", "all:1:1e-4:1")
    out = capsys.readouterr().out  # not a terminal: one plain line per epoch, no progress bar
    training = out[out.index("== Stage 'head'"):out.index("SavedModel written")]  # epochs, then measuring the export
    assert "Epoch 2/2" in training and "val_accuracy" in training
    assert "\b" not in training and "\r" not in training
    classifier = TensorFlowClassifier(tmp_path)
    assert classifier.labels == ["kia_rio", "lada_kalina", "mazda_3"] and classifier.image_size == (64, 64)
    assert classifier.metadata["backbone"] == "EfficientNetB0"
    probabilities = predict_views(classifier, np.full((80, 120, 3), 128, np.uint8))[1]
    assert probabilities.shape == (3,) and abs(probabilities.sum() - 1) < 1e-5


@pytest.mark.shared
def test_without_a_stage_the_exported_model_is_the_linear_probe(tiny_dataset, tmp_path):
    """stages: [] in a config file: no fine-tuning; the SavedModel's probabilities are the logistic regression's
    fitted on its own features of the training photos (LP-FT's first half alone)."""
    config = tmp_path / "probe.yaml"
    config.write_text("stages: []\n")
    out = tmp_path / "model"
    carclf("train", "--config", config, *mobilenet(out, tiny_dataset), "--image-size", "64")
    assert json.loads((out / "history.json").read_text()) == []
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kept_epoch"] == {"epoch": 0, "stage": "linear-probe", "val_accuracy": None}
    assert metrics["train_seconds"] > 0  # the probe's features and fit
    assert "the model is the linear probe" in (out / "report" / "report.md").read_text()
    samples, labels = load_samples([tiny_dataset])
    train, val = split_by_group(samples, 0.25, 42)
    classifier = TensorFlowClassifier(out)
    outputs = [classifier.predict(np.stack([load_image(s.path, 64) for s in part])) for part in (train, val)]
    probe = fit_linear_probe(outputs[0][2], np.array([labels.index(s.label) for s in train]), len(labels))
    mean, variance, kernel, bias = head_weights(probe)
    logits = (outputs[1][2] - mean) / np.sqrt(variance + 1e-3) @ kernel + bias  # head_bn's epsilon, then the dense
    np.testing.assert_allclose(outputs[1][0], logits, rtol=1e-3, atol=1e-3)


def test_no_stage_needs_the_probe_head():
    with pytest.raises(ValueError, match="needs head_init probe"):
        TrainConfig(stages=[], head_init="random")


@pytest.mark.shared
def test_multiscale_features_run_through_export_litert_and_the_known_model_test(tiny_dataset, tmp_path):
    """--multiscale-side: the backbone sees the photo at each side too; the exported features, the LiteRT and
    ONNX copies and the known-model calibration all carry every scale, the input's own first."""
    carclf("train", "--data", tiny_dataset, "--out", tmp_path, "--backbone", "EfficientNetLite0", "--image-size", "64",
           "--multiscale-side", "48", "--multiscale-side", "32", *TINY, "--stage", "head:1:1e-3:0")
    for parity_file in ("litert_parity.json", "onnx_parity.json"):
        parity = json.loads((tmp_path / parity_file).read_text())
        assert parity["top1_agreement"] == 1 and parity["max_probability_difference"] < 1e-4
    photos = [load_image(path, 64) for path in sorted(tiny_dataset.glob("*/*.jpg"))[:4]]
    features = TensorFlowClassifier(tmp_path).predict(np.stack(photos))[2]
    assert features.shape == (4, 3 * 1280)
    single = feature_extractor(TrainConfig(backbone="EfficientNetLite0", image_size=64))
    np.testing.assert_allclose(features[:, :1280], single.predict(np.stack(photos).astype(np.float32), verbose=0),
                               rtol=1e-4, atol=1e-4)
    assert np.load(tmp_path / "calibration.npz")["original"].shape[1] == 3 * 1280
    saved = TrainConfig.from_dict(json.loads((tmp_path / "training_config.json").read_text()))
    assert saved.multiscale_sides == [48, 32]


@pytest.mark.shared
def test_bilinear_pooling_is_the_pca_projected_signed_sqrt_gram_and_runs_through_export(tiny_dataset, tmp_path):
    """pooling: bilinear: the projection is the PCA of the training photos' maps (decorrelated, largest variance
    first); the features are the upper triangle of the location-averaged Gram matrix of the projected map, signed
    square root, unit norm (Lin et al. 2015); the export, its LiteRT copy and the known-model test carry them."""
    dim = 6
    config = tmp_path / "bilinear.yaml"
    config.write_text(f"pooling: bilinear\nbilinear_dim: {dim}\nprobe_c: 100\nstages: []\n")
    out = tmp_path / "model"
    carclf("train", "--config", config, "--data", tiny_dataset, "--out", out, "--backbone", "EfficientNetLite0",
           "--image-size", "64", *TINY)
    parity = json.loads((out / "litert_parity.json").read_text())
    assert parity["top1_agreement"] == 1 and parity["max_probability_difference"] < 1e-4
    assert np.load(out / "calibration.npz")["original"].shape[1] == dim * (dim + 1) // 2

    samples, labels = load_samples([tiny_dataset])
    train, _ = split_by_group(samples, 0.25, 42)
    model, _ = build_classifier(TrainConfig(backbone="EfficientNetLite0", pooling="bilinear", bilinear_dim=dim),
                                len(labels))
    fit_projection(model, make_dataset(train, labels, 64, 4))
    photos = np.stack([load_image(s.path, 64) for s in train]).astype(np.float32)
    projected = np.asarray(keras.Model(model.input, model.get_layer(PROJECTION_LAYER).output)(photos))
    covariance = np.cov(projected.reshape(-1, dim), rowvar=False)
    assert np.abs(projected.reshape(-1, dim).mean(0)).max() < 1e-3
    np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0, atol=1e-3 * covariance[0, 0])
    assert np.all(np.diff(np.diag(covariance)) <= 0)
    vectors = projected.reshape(len(photos), -1, dim)
    gram = np.einsum("npi,npj->nij", vectors, vectors) / vectors.shape[1]
    upper = gram[:, *np.triu_indices(dim)]
    expected = np.sign(upper) * np.sqrt(np.abs(upper))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    features = np.asarray(keras.Model(model.input, model.get_layer(FEATURES_LAYER).output)(photos))
    np.testing.assert_allclose(features, expected, atol=1e-5)


@pytest.mark.shared
def test_the_bilinear_projection_sees_the_same_photos_whatever_the_batch_size(tiny_dataset):
    """Every n-th photo, not every n-th batch: with batches of 3 or 4 the PCA is fitted on the same photos."""
    samples, labels = load_samples([tiny_dataset])
    train, _ = split_by_group(samples, 0.25, 42)
    config = TrainConfig(backbone="EfficientNetLite0", pooling="bilinear", bilinear_dim=4)
    projections = []
    for batch_size in (3, 4):
        model, _ = build_classifier(config, len(labels))
        fit_projection(model, make_dataset(train, labels, 64, batch_size), photos=len(train) // 4)
        projections.append(model.get_layer(PROJECTION_LAYER).get_weights())
    for first, second in zip(*projections):
        np.testing.assert_allclose(first, second, atol=1e-4)


def test_bilinear_pooling_works_at_one_scale():
    with pytest.raises(ValueError, match="one scale"):
        TrainConfig(pooling="bilinear", multiscale_sides=[224])


@pytest.mark.shared
def test_cli_errors_are_one_line_and_exit_nonzero(tiny_dataset, tmp_path, capsys):
    error = carclf_error(capsys, "train", "--data", tiny_dataset, "--out", tmp_path, "--backbone", "MobileNetV2",
                         "--weights", tmp_path / "missing.h5", *TINY)
    assert "does not exist" in error and "--config configs/shipped.yaml" in error and "--weights PATH" in error
    assert "--out is required" in carclf_error(capsys, "train", "--data", tiny_dataset)



@pytest.mark.shared
def test_progressive_resizing_over_two_roots_with_training_knobs(tiny_dataset, kaggle_dataset, tmp_path):
    carclf("train", *mobilenet(tmp_path, tiny_dataset, kaggle_dataset), "--class-names", ",".join(TINY_CLASSES),
           "--stage", "head:1:1e-3:0::64", "--stage", "large:2:1e-4:0.5:3:96", "--optimizer", "adamw", "--schedule",
           "cyclic", "--loss", "focal", "--class-weight", "balanced", "--augment", "strong", "--tensorboard")
    classifier = TensorFlowClassifier(tmp_path)
    assert classifier.image_size == (96, 96) and classifier.labels == list(TINY_CLASSES)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [(s["stage"]["image_size"], s["stage"]["batch_size"]) for s in history] == [(64, 4), (96, 3)]
    assert [s["first_epoch"] for s in history] == [0, 1]
    assert all(rate > 0 for stage in history for rate in stage["learning_rate"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train_images"] + metrics["validation_images"] == 21  # 12 ImageFolder + 9 Kaggle photos
    log = (tmp_path / "training_log.csv").read_text().splitlines()
    assert log[0].split(",")[:3] == ["epoch", "accuracy", "learning_rate"]
    assert [row.split(",")[0] for row in log[1:]] == [str(e) for e in range(sum(len(s["loss"]) for s in history))]
    assert list((tmp_path / "tensorboard" / "train").glob("events.out.tfevents.*"))
    config = TrainConfig.from_dict(json.loads((tmp_path / "training_config.json").read_text()))
    assert config.data == [str(tiny_dataset), str(kaggle_dataset)] and config.schedule == "cyclic"


@pytest.mark.shared
def test_mirrored_strategy_and_mixed_precision_run_on_cpu(tiny_dataset, tmp_path):
    import keras

    carclf("train", *mobilenet(tmp_path, tiny_dataset), "--image-size", "64", "--stage", "head:1:1e-2:0", "--strategy",
           "mirrored", "--mixed-precision", "on", "--optimizer", "sgd", "--schedule", "exponential")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training
    classifier = TensorFlowClassifier(tmp_path)
    probabilities = predict_views(classifier, np.full((70, 90, 3), 100, np.uint8))[1]
    assert probabilities.dtype == np.float32 and abs(probabilities.sum() - 1) < 1e-5
    assert classifier.image_size == (64, 64)
