"""Train a car-model classifier and export it as a SavedModel.

    python -m training.train --data DIR [--data DIR ...] --out DIR [--config FILE] [options]

Transfer learning then staged fine-tuning (see :class:`training.config.Stage`);
writes to ``--out``: ``saved_model.pb`` + ``variables/``, ``model.tflite``,
``model.onnx`` and ``metadata.json`` (the same model on LiteRT and ONNX
Runtime, each checked against the SavedModel on the validation photos:
:mod:`training.export.parity`),
``training_config.json``, ``history.json`` (per stage: epochs, learning rate,
loss and accuracy curves), ``training_log.csv`` (one row per epoch, epochs
numbered across stages), ``metrics.json`` (validation accuracy with and without
TTA, measured on the exported SavedModel), ``calibration.json`` (the
known-model threshold, :mod:`training.evaluation.known_model`), ``report/`` (learning
curves, :mod:`training.evaluation.reports`) and, with ``--tensorboard``, ``tensorboard/``.
"""

import sys
from collections.abc import Sequence

from training.config import parse_args
from training.fitting.run import train

# training.fitting.run imports TensorFlow, Keras and albumentations (seconds to import) in the
# functions that use them, so that --help and flag errors answer at once.


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; exits with status 1 and a one-line message on bad input."""
    config = parse_args(argv, description=__doc__.split("\n\n")[0])
    from training.backbones.catalog import WeightsUnavailableError

    try:
        train(config)
    except WeightsUnavailableError as error:
        sys.exit(f"error: {error} The shipped model's preset, --config configs/shipped.yaml, trains "
                 "EfficientNet-Lite0 with its installed ImageNet weights, offline; or give --weights PATH to a local "
                 "weights file (--weights none: random initial weights).")
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
