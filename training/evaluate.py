"""Evaluate an exported SavedModel on labelled photos, with and without TTA.

    python -m training.evaluate --model DIR --data DIR [--split all|validation]

``--split validation`` re-creates the group-aware validation split of the
model's own ``training_config.json``; ``all`` (default) uses every photo (for a
held-out dataset). Prints JSON.
"""

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np

from inference.classifier import Classifier, ModelNotFoundError
from inference.tta import DEFAULT_VIEWS, tta_batch
from training.config import TrainConfig
from training.data import load_samples, split_by_group


def evaluate_savedmodel(model_dir, samples, views=DEFAULT_VIEWS):
    """Accuracy of the SavedModel on ``samples``, without and with TTA.

    Decodes each file as the service does and runs all TTA views as one batch;
    the first view must be ``original`` and is also the no-TTA prediction.

    Args:
        model_dir: directory of a SavedModel exported by :mod:`training.export`.
        samples: ``list[training.data.Sample]`` whose labels the model knows.
        views: TTA view names, starting with ``original``.

    Returns:
        ``dict`` with ``accuracy``, ``accuracy_tta`` (fractions in [0, 1]),
        ``tta_views`` and ``errors_tta`` (list of ``{file, label, predicted}``).

    Raises:
        inference.classifier.ModelNotFoundError: no SavedModel there.
        ValueError: ``views`` does not start with ``original``, or a sample's
            label is unknown to the model.
    """
    if views[0] != "original":
        raise ValueError("the first TTA view must be 'original'")
    classifier = Classifier(model_dir)
    unknown = {sample.label for sample in samples} - set(classifier.labels)
    if unknown:
        raise ValueError(f"labels unknown to the model: {sorted(unknown)}")
    plain, tta, errors = 0, 0, []
    progress = keras.utils.Progbar(len(samples), unit_name="image")
    for sample in samples:
        image = classifier.decode(Path(sample.path).read_bytes(), max_pixels=sys.maxsize)
        probabilities = classifier.predict_probabilities(tta_batch(image, views))
        plain += classifier.labels[int(np.argmax(probabilities[0]))] == sample.label
        predicted = classifier.labels[int(np.argmax(probabilities.mean(axis=0)))]
        tta += predicted == sample.label
        if predicted != sample.label:
            errors.append({"file": Path(sample.path).name, "label": sample.label, "predicted": predicted})
        progress.add(1)
    return {
        "accuracy": plain / len(samples),
        "accuracy_tta": tta / len(samples),
        "tta_views": list(views),
        "errors_tta": errors,
    }



def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel directory")
    parser.add_argument("--data", required=True, help="dataset root (ImageFolder, optional labels.csv)")
    parser.add_argument("--split", choices=("all", "validation"), default="all")
    args = parser.parse_args(argv)
    try:
        samples, _ = load_samples(args.data)
        if args.split == "validation":
            config = TrainConfig.from_dict(json.loads((Path(args.model) / "training_config.json").read_text()))
            samples = split_by_group(samples, config.val_fraction, config.seed)[1]
        print(json.dumps(evaluate_savedmodel(args.model, samples), indent=2))
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
