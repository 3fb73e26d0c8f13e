"""Optimizers, losses and learning-rate schedules: each builds, has the
documented shape, and trains a small model for a step."""

import dataclasses

import keras
import numpy as np
import pytest

from training.config import OPTIMIZER_NAMES, Stage, TrainConfig
from training.fitting.optimization import LOSSES, OPTIMIZERS, SCHEDULES, build_loss, build_optimizer, build_schedule

STAGE = Stage("s", epochs=10, learning_rate=1e-3, unfreeze=0)
STEPS = 20  # per epoch: 200 steps in the stage


def rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def config(**changes):
    return dataclasses.replace(TrainConfig(), **changes)


def test_onecycle_warms_up_from_lr_over_25_for_30_percent_then_anneals():
    lr = rates(build_schedule(config(schedule="onecycle"), STAGE, STEPS), [0, 60, 130, 200])
    assert np.allclose(lr[:2], [1e-3 / 25, 1e-3]) and 1e-7 < lr[3] < lr[2] < 1e-3
    assert lr[3] == pytest.approx(1e-7, rel=0.05)


def test_cosine_warms_up_from_zero_then_decays_to_zero():
    lr = rates(build_schedule(config(schedule="cosine", warmup_fraction=0.1), STAGE, STEPS), [0, 10, 20, 110, 200])
    assert lr[0] == 0 and lr[1] == pytest.approx(5e-4) and lr[2] == pytest.approx(1e-3)
    assert lr[3] == pytest.approx(5e-4, rel=0.01) and lr[4] == pytest.approx(0, abs=1e-9)


def test_exponential_decays_by_decay_rate_per_epoch():
    lr = rates(build_schedule(config(schedule="exponential", decay_rate=0.5), STAGE, STEPS), [0, 20, 40])
    assert np.allclose(lr, [1e-3, 5e-4, 2.5e-4])


def test_cyclic_is_triangular_between_lr_over_10_and_lr():
    schedule = build_schedule(config(schedule="cyclic", cycle_epochs=2), STAGE, STEPS)  # 20-step half cycles
    lr = rates(schedule, [0, 10, 20, 30, 40, 60])
    assert np.allclose(lr, [1e-4, 5.5e-4, 1e-3, 5.5e-4, 1e-4, 1e-3])


def test_plateau_is_a_constant_for_reduce_lr_on_plateau():
    assert build_schedule(config(schedule="plateau"), STAGE, STEPS) == 1e-3


def test_focal_loss_down_weights_easy_examples():
    targets = np.eye(3, dtype="float32")[[0, 1]]
    easy, hard = np.array([[4.0, 0, 0], [0, 4.0, 0]]), np.array([[0.5, 0, 0], [0, 0.5, 0]])
    cross_entropy = build_loss(config(loss="crossentropy", label_smoothing=0))
    focal = build_loss(config(loss="focal", label_smoothing=0))
    easy_ratio = float(focal(targets, easy)) / float(cross_entropy(targets, easy))
    hard_ratio = float(focal(targets, hard)) / float(cross_entropy(targets, hard))
    assert easy_ratio < hard_ratio / 10
    smoothed = build_loss(config(loss="crossentropy", label_smoothing=0.1))
    assert float(smoothed(targets, easy)) > float(cross_entropy(targets, easy))


def test_every_accepted_optimizer_name_has_a_builder():
    assert set(OPTIMIZER_NAMES) == set(OPTIMIZERS)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_each_optimizer_with_each_schedule_takes_a_step(optimizer, schedule):
    keras.utils.set_random_seed(0)
    settings = config(optimizer=optimizer, schedule=schedule)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=build_optimizer(settings, build_schedule(settings, STAGE, STEPS)),
                  loss=build_loss(settings))
    before = model.get_weights()[0].copy()
    x, y = np.random.rand(8, 4).astype("float32"), np.eye(3, dtype="float32")[np.arange(8) % 3]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps: cosine starts at 0
    assert np.isfinite(history.history["loss"][0]) and not np.allclose(model.get_weights()[0], before)
    assert type(model.optimizer).__name__.lower() == optimizer


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_builds_on_logits(loss):
    targets = np.eye(3, dtype="float32")[[0, 2]]
    value = float(build_loss(config(loss=loss))(targets, np.array([[2.0, 0, 0], [0, 0, 2.0]])))
    assert 0 < value < 1
