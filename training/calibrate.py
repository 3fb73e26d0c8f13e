"""Calibrate the known-model test of an exported SavedModel: ``calibration.json``.

    python -m training.calibrate --model DIR --data DIR [--other-models DIR ...] [--unknown DIR ...]
        [--other-angle FOLDER=LABEL ...] [--quantile 0.98]

Re-creates the model's own group-aware train/validation split from its
``training_config.json``, keeps the pooled features of the training split as
the test's neighbours and sets the threshold at the ``--quantile`` of the
validation scores (see :mod:`inference.calibration`), for each TTA setting the
service offers. ``--unknown`` (folders of photos of other car models, searched
recursively) and ``--other-models`` (one sub-folder per car model the model
does not know) are measured: how many of them the threshold turns away,
beside other scores chosen by the same rule: the Mahalanobis distance to the
class centres (Lee et al. 2018), the maximum softmax probability (Hendrycks &
Gimpel 2017), the energy score (Liu et al. 2020) and, with
``--other-models``, the Mahalanobis distance relative to a background
Gaussian fitted on every other one of those models (sorted; the others are
measured only). ``--other-angle FOLDER=LABEL`` names a sub-folder of either
root whose photos show the known model ``LABEL`` (other angles or
generations, e.g. Stanford Cars' ``136_hyundai_accent_sedan_2012=hyundai_solaris``):
they are measured apart, as answered right, answered wrong, or turned away,
and never fitted. Nothing but the training and validation photos changes the
test. ``training.train`` runs it after every export, without other photos
(:mod:`training.evaluation.known_model`).
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from inference.model_folder import ModelNotFoundError
from training.data.dataset import model_split
from training.evaluation.known_model import DEFAULT_QUANTILE, calibrate, read_other_models, read_unknown, summary


def _folder_label(text: str) -> tuple[str, str]:
    folder, separator, label = text.partition("=")
    if not separator or not folder or not label:
        raise argparse.ArgumentTypeError(f"expected FOLDER=LABEL, got {text!r}")
    return folder, label


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; exits with status 1 and a one-line message on bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel directory (with its training_config.json)")
    parser.add_argument("--data", required=True, help="the dataset the model was trained on")
    parser.add_argument("--unknown", action="append", default=[],
                        help="folder of photos of car models the model does not know, searched recursively; "
                             "repeatable (measured only)")
    parser.add_argument("--other-models", action="append", default=[],
                        help="folder of photos of other car models, one sub-folder per model: every other model "
                             "(sorted) fits the background of a compared score (relative Mahalanobis), the rest "
                             "are measured only; repeatable")
    parser.add_argument("--other-angle", action="append", default=[], type=_folder_label, metavar="FOLDER=LABEL",
                        help="sub-folder of an --unknown or --other-models root whose photos show the known model "
                             "LABEL from other angles; repeatable (measured apart, never fitted)")
    parser.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE,
                        help=f"share of validation photos kept as known; default {DEFAULT_QUANTILE}")
    args = parser.parse_args(argv)
    try:
        train_samples, val_samples = model_split(args.model, args.data)
        unknown, other_angle = read_unknown(args.unknown, dict(args.other_angle))
        background, measured, more_angles = read_other_models(args.other_models, dict(args.other_angle))
        calibration = calibrate(args.model, train_samples, val_samples, unknown + measured, args.quantile,
                                other_angle + more_angles, args.unknown + args.other_models, background)
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(f"{Path(args.model) / 'calibration.json'} written\n{summary(calibration)}")


if __name__ == "__main__":
    main()
