"""The bare model: forward time per image of the shipped model, no service.

    python -m benchmarks.bare_model [--model model] [--batch-sizes 1 2 4 8 16 32] [--runtime onnxruntime]
                                    [--precision int8]

For each batch size (in images) and with/without the TTA views, feeds real
photos already resized to the model's input size (what the service feeds it)
and prints the first call's time (one-time per-shape cost, what warm-up must
pay) and the median of the following calls, per batch and per image:

- ``signature``: the SavedModel's ``serving_default`` concrete function, the
  way ``inference.savedmodel.TensorFlowClassifier`` calls it, by ``--callers``
  threads side by side (times per batch are then wall time over calls: what
  sets the throughput); with ``--runtime litert``, ``model.tflite`` on
  LiteRT instead (``inference.litert.LiteRTClassifier``, one
  single-threaded interpreter per caller), with ``--runtime onnxruntime``,
  ``model.onnx`` on ONNX Runtime (``inference.ort.OnnxRuntimeClassifier``,
  one session, one single-threaded pass per caller), TensorFlow not imported;
  with ``--precision int8`` too, ``model.int8.onnx`` (docs/int8.md);
- ``predict``: the naive baseline, one Keras ``Model.predict`` call per batch on
  the same SavedModel wrapped in ``keras.layers.TFSMLayer`` (what a Keras
  upload demo does per request; each call builds a tf.data pipeline).

TensorFlow uses its default thread pools (all cores) unless
``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` are set. The
service's own setting on 2 cores (two batch threads, one core each) is
measured by::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=2 python -m benchmarks.bare_model --callers 1 2
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    ROOT,
    keras_predict_call,
    machine_summary,
    photo_summary,
    real_photos,
    table,
    time_calls,
)
from inference import PRECISIONS, RUNTIMES  # noqa: E402
from inference.calibration import Calibration  # noqa: E402
from inference.contract import INPUT, SERVING_SIGNATURE, ModelFacts, model_input  # noqa: E402
from inference.images import decode_image, resize  # noqa: E402
from inference.loading import load_predictor  # noqa: E402
from inference.tta import DEFAULT_VIEWS, SERVED_VIEWS, tta_batch  # noqa: E402

BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def load_signature(model_dir):
    """``(serving_default concrete function, (height, width))`` of a SavedModel."""
    import tensorflow as tf

    module = tf.saved_model.load(str(model_dir))
    return module.signatures[SERVING_SIGNATURE], ModelFacts.from_savedmodel(module).image_size


def load_call(model_dir, runtime, callers, precision="float32"):
    """``(batch -> probabilities, (height, width))`` of the model on ``runtime`` at ``precision``
    (``tensorflow``: ``signature_call``; ``litert``: one interpreter per caller;
    ``onnxruntime``: one session, as many passes at once as callers)."""
    if runtime == "tensorflow" and precision == "float32":
        signature, image_size = load_signature(model_dir)
        return signature_call(signature), image_size
    predictor = load_predictor(model_dir, runtime, passes=callers, precision=precision)
    return (lambda batch: predictor.predict(batch)[1]), predictor.image_size


def model_inputs(photos, image_size):
    """JPEG ``photos`` as the model's input of ``image_size`` ``(height, width)``, as the service
    makes it (``inference.contract.model_input``).

    Returns:
        ``uint8`` array ``(len(photos), height, width, 3)``.
    """
    return np.stack([model_input(data, image_size) for data in photos])


def around_model_times(photos, image_size, model_dir):
    """Median time per photo of each step the service runs around the model:
    decoding, resizing and TTA views before it, the known-model test after it
    (on a class centre's features, when the model has a calibration).

    Returns:
        ``dict`` step name -> seconds.
    """
    size = image_size[::-1]
    steps = {
        "decode (Pillow, JPEG draft mode)": lambda data: decode_image(data, min_size=size),
        "resize to the input size (Pillow)": lambda pixels: resize(pixels, size),
        "TTA views (original + flip)": lambda pixels: tta_batch(pixels, DEFAULT_VIEWS),
    }
    calibration = Calibration.load(model_dir)
    if calibration is not None:
        test = next(iter(calibration.modes.values()))
        steps["known-model test (one image's features)"] = lambda _: test.distances(test.neighbours[0])
    times = {name: [] for name in steps}
    for data in photos * 2:  # the first pass warms caches up
        value = data
        for name, step in steps.items():
            started = time.perf_counter()
            value = step(value)
            times[name].append(time.perf_counter() - started)
    return {name: float(np.median(values[len(photos):])) for name, values in times.items()}


def view_batch(images, count, views):
    """The first ``count`` images (cycling) with their TTA ``views``, as one batch."""
    picked = [images[i % len(images)] for i in range(count)]
    return np.concatenate([tta_batch(image, views) for image in picked])


def signature_call(signature):
    """``batch -> probabilities`` through the concrete function, as the service calls it."""
    import tensorflow as tf

    return lambda batch: signature(**{INPUT: tf.convert_to_tensor(batch, dtype=tf.uint8)})["probabilities"].numpy()


def measure(signature, images, batch_sizes, min_seconds=0.5, callers=(1,), predict=None):
    """Forward times of the bare model.

    Args:
        signature: ``batch -> probabilities`` from ``signature_call``.
        images: model inputs from ``model_inputs``.
        batch_sizes: images per batch.
        callers: numbers of threads calling ``signature`` side by side (see
            ``time_calls``), each measured.
        predict: optional ``batch -> probabilities`` from
            ``benchmarks.harness.keras_predict_call``, measured with one caller.

    Returns:
        ``list`` of ``dict`` with ``images``, ``views`` (per image), ``rows``
        (batch dimension), ``callers``, ``signature`` and, with one caller and
        ``predict``, ``predict``: ``{"first_s", "median_s"}`` (seconds per call).
    """
    results = []
    for views in SERVED_VIEWS.values():
        for count in batch_sizes:
            batch = view_batch(images, count, views)
            for threads in callers:
                print(f"  {count} image(s) x {len(views)} view(s), {threads} caller(s)", file=sys.stderr, flush=True)
                row = {"images": count, "views": len(views), "rows": len(batch), "callers": threads}
                for name, call in (("signature", signature), ("predict", predict)):
                    if call is not None and (name == "signature" or threads == 1):
                        first, median = time_calls(call, batch, min_seconds, callers=threads)
                        row[name] = {"first_s": first, "median_s": median}
                results.append(row)
    return results


def threads_summary():
    """TensorFlow's thread settings of this process, from the environment."""
    return (f"TensorFlow threads: intra-op {os.environ.get('TF_NUM_INTRAOP_THREADS', 'default (all cores)')}, "
            f"inter-op {os.environ.get('TF_NUM_INTEROP_THREADS', 'default (all cores)')}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "model"), help="SavedModel directory (default: model/)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES, help="images per batch")
    parser.add_argument("--photos", type=int, default=32, help="distinct real photos (about 100 KB) to cycle through")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="timing per configuration, after warm-up")
    parser.add_argument("--no-predict", action="store_true", help="skip the Keras model.predict baseline")
    parser.add_argument("--callers", type=int, nargs="+", default=[1],
                        help="threads calling the model side by side, as the service's batch threads do")
    parser.add_argument("--runtime", choices=RUNTIMES, default="tensorflow",
                        help="the SavedModel on TensorFlow, model.tflite on LiteRT or model.onnx on ONNX Runtime "
                             "(default: %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="int8: model.int8.onnx (with --runtime onnxruntime); default: %(default)s")
    parser.add_argument("--json", action="store_true", help="print the results as JSON only (for service.py)")
    args = parser.parse_args(argv)
    photos = real_photos(args.photos)
    machine = machine_summary()
    try:
        call, image_size = load_call(args.model, args.runtime, max(args.callers), args.precision)
    except (FileNotFoundError, ValueError) as error:  # no such file, or int8 on another runtime
        parser.error(str(error))
    predict = None if args.no_predict or args.runtime != "tensorflow" else keras_predict_call(args.model)
    results = measure(call, model_inputs(photos, image_size), args.batch_sizes, args.min_seconds, args.callers,
                      predict)
    if args.json:
        print(json.dumps(results))
        return
    print(machine)
    print(photo_summary(photos) + ", resized to the model's input size")
    print(f"runtime: {args.runtime}; " + threads_summary() if args.runtime == "tensorflow" else
          f"runtime: {args.runtime}, {args.precision}, one thread per pass, one pass per caller")
    headers = ["TTA", "images", "rows", "callers", "first ms", "ms/batch", "ms/image", "images/s"]
    if predict is not None:
        headers += ["predict first ms", "predict ms/batch", "predict images/s"]
    rows = []
    for r in results:
        row = ["on" if r["views"] > 1 else "off", r["images"], r["rows"], r["callers"]]
        for name in ("signature", "predict"):
            if name in r:
                t = r[name]
                row += [f"{t['first_s'] * 1e3:.0f}", f"{t['median_s'] * 1e3:.1f}"]
                row += [f"{t['median_s'] * 1e3 / r['images']:.2f}"] if name == "signature" else []
                row += [f"{r['images'] / t['median_s']:.0f}"]
            elif name == "predict" and predict is not None:
                row += [""] * 3
        rows.append(row)
    print(table(headers, rows))
    print()
    steps = around_model_times(photos, image_size, args.model)
    print(table(["per request, around the model", "ms"], [[name, f"{t * 1e3:.2f}"] for name, t in steps.items()]))


if __name__ == "__main__":
    main()
