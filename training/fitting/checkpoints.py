"""Resuming an interrupted training run: the run's state in ``OUT/checkpoints/``.

Rerun the same command (same config) and training goes on after the last
finished epoch; ``--no-resume`` starts over. The folder is removed once the
model is exported. It holds:

- ``run.json``: the config, the linear probe's validation accuracy, the
  finished stages' histories and the current stage's finished epochs (Keras
  logs and ``epoch_seconds``), rewritten after every epoch;
- ``start.weights.h5``: the weights the current stage started from (after
  the linear probe, then after each finished stage);
- ``best.weights.h5``: the best-validated weights so far (the kept epoch);
- ``stage-N/``: ``keras.callbacks.BackupAndRestore`` of stage ``N``: weights,
  optimizer state and epoch after its last finished epoch.

A resumed run is not bit-identical to an uninterrupted one: shuffling and
augmentation restart their sequences, and early stopping its patience count.
"""

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Keras takes seconds to import: carclf train answers --help without it
    import keras

RUN_FILENAME = "run.json"
# Config fields that do not make another run: whether to resume, OUT, which holds this folder
# (the same run may be named by a relative or an absolute path), and where the data is kept.
NOT_SETTINGS = frozenset({"resume", "out", "memory_budget_gb"})


class RunState:
    """What a training run has finished, kept in ``directory`` (see the module docstring).

    Args:
        directory: the checkpoints folder (``OUT/checkpoints``).
        config: the run's config as a ``dict`` (``training.config.TrainConfig.to_dict``).
        resume: continue from ``directory`` when it holds a run of the same
            config; ``False``: remove it and start over.

    Raises:
        ValueError: ``directory`` holds a run of another config (the message
            names the differing fields and the two ways out).
    """

    def __init__(self, directory: Path, config: dict[str, Any], resume: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / RUN_FILENAME
        self.start_weights = self.directory / "start.weights.h5"
        self.best_weights = self.directory / "best.weights.h5"
        config = {key: value for key, value in config.items() if key not in NOT_SETTINGS}
        if not resume:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.path.is_file():
            self.state = json.loads(self.path.read_text())
            changed = sorted(key for key in (config.keys() | self.state["config"].keys()) - NOT_SETTINGS
                             if config.get(key) != self.state["config"].get(key))
            if changed:
                raise ValueError(f"{self.directory} holds an interrupted run with other settings "
                                 f"({', '.join(changed)}); rerun it with the same settings to finish it, "
                                 "or pass --no-resume to start over")
            print(f"Resuming the interrupted run in {self.directory} ({len(self.state['stages'])} stage(s) finished)")
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.state = {"config": config, "probe_val_accuracy": None, "stages": [], "epochs": {}}

    @property
    def started(self) -> bool:
        """Whether the run has weights to go on from (the probe's or a finished epoch's)."""
        return self.start_weights.is_file()

    @property
    def finished_stages(self) -> list[dict[str, Any]]:
        """The histories of the finished stages, in order (``dict`` as
        ``training.fitting.stages.fit_stages`` returns)."""
        return self.state["stages"]

    @property
    def probe_val_accuracy(self) -> float | None:
        """The linear probe's validation accuracy (epoch 0), once measured."""
        return self.state["probe_val_accuracy"]

    def backup_dir(self, stage_index: int) -> str:
        """The ``BackupAndRestore`` folder of stage ``stage_index``."""
        return str(self.directory / f"stage-{stage_index}")

    def epochs(self) -> list[dict[str, float]]:
        """The current stage's finished epochs in order: Keras logs plus ``epoch_seconds``."""
        return [self.state["epochs"][key] for key in sorted(self.state["epochs"], key=int)]

    def record_probe(self, model: "keras.Model", val_accuracy: float | None) -> None:
        """The head is initialised (``head_init: probe``): its weights start the first
        stage and, when the probe competes as epoch 0 (``val_accuracy`` given), are the best so far."""
        model.save_weights(self.start_weights)
        if val_accuracy is not None:
            model.save_weights(self.best_weights)
        self.state["probe_val_accuracy"] = val_accuracy
        self._save()

    def record_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        """Epoch ``epoch`` (0-based, counted across stages) of the current stage finished with ``logs``."""
        self.state["epochs"][str(epoch)] = {key: float(value) for key, value in logs.items()}
        self._save()

    def finish_stage(self, model: "keras.Model", history: dict[str, Any], stage_index: int) -> None:
        """Stage ``stage_index`` ended: keep its ``history``, and its last weights as the next stage's start."""
        model.save_weights(self.start_weights)
        self.state["stages"].append(history)
        self.state["epochs"] = {}
        self._save()
        shutil.rmtree(self.backup_dir(stage_index), ignore_errors=True)

    def remove(self) -> None:
        """The model is exported: the checkpoints are no longer needed."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def _save(self) -> None:
        # Written aside then renamed: an interruption mid-write leaves the previous state.
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(self.state, indent=1) + "\n")
        scratch.replace(self.path)
