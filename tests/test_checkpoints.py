"""An interrupted run's folder (training.fitting.checkpoints.RunState): which settings make another run."""

import pytest

from training.config import TrainConfig
from training.fitting.checkpoints import RunState


def test_a_run_resumes_under_another_spelling_of_its_folder_but_not_with_other_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "a" / "checkpoints"
    config = TrainConfig(data=["photos"], out="runs/a", label_smoothing=0.0).to_dict()
    RunState(folder, config).record_epoch(0, {"val_accuracy": 0.5})  # interrupted after one epoch
    # The same run, its OUT given as an absolute path (and resume=False saved in the config): resumed.
    resumed = RunState(folder, {**config, "out": str(tmp_path / "runs" / "a"), "resume": False})
    assert resumed.epochs() == [{"val_accuracy": 0.5}]
    with pytest.raises(ValueError, match=r"holds an interrupted run with other settings \(label_smoothing\)"):
        RunState(folder, {**config, "label_smoothing": 0.1})
    assert RunState(folder, {**config, "label_smoothing": 0.1}, resume=False).epochs() == []  # starts over
