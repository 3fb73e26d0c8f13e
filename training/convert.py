"""Convert an exported SavedModel to float32 LiteRT and ONNX, each checked on real photos.

    python -m training.convert MODEL_DIR --data DIR [--data DIR ...] [--limit N]

Writes beside the SavedModel ``model.tflite`` (the ``serving_default``
signature, frozen, without its resize: the service resizes before the model),
``model.onnx`` (converted from it: :mod:`training.export.onnx`) and
``metadata.json`` (the ``metadata`` signature's labels, input size and
training facts), which :class:`inference.litert.LiteRTClassifier` and
:class:`inference.ort.OnnxRuntimeClassifier` serve with no TensorFlow.
``python -m training.train`` runs the same conversions on its validation
photos at the end of the export.

The parity check runs the SavedModel and each conversion on the same decoded
photos and refuses a conversion (not written, exit status 1) unless every
photo gets the same top class and the same known-model answer, and no
probability differs by more than
:data:`training.export.parity.MAX_PROBABILITY_DIFFERENCE`. Its figures go to
``litert_parity.json`` and ``onnx_parity.json`` beside the model.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from training.export.litert import write_litert
from training.export.onnx import write_onnx
from training.export.parity import summary


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; exits with status 1 and a one-line message on failure."""
    parser = argparse.ArgumentParser(prog="python -m training.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="SavedModel directory (e.g. model)")
    parser.add_argument("--data", action="append", required=True,
                        help="dataset root of real photos for the parity check (repeatable)")
    parser.add_argument("--limit", type=int, default=0, help="check on the first N photos only (default: all)")
    args = parser.parse_args(argv)
    from inference.model_folder import ONNX_FILENAME, TFLITE_FILENAME, ModelNotFoundError
    from inference.savedmodel import TensorFlowClassifier
    from training.data.dataset import load_samples

    try:
        samples, _ = load_samples(args.data)
        photos = [sample.path for sample in samples][: args.limit or None]
        reference = TensorFlowClassifier(args.model)
        print(summary(write_litert(args.model, photos, reference), Path(args.model) / TFLITE_FILENAME), flush=True)
        print(summary(write_onnx(args.model, photos, reference), Path(args.model) / ONNX_FILENAME))
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
