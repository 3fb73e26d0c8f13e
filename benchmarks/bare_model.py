"""The bare model: forward time per image of the shipped SavedModel, no service.

    python -m benchmarks.bare_model [--model model] [--batch-sizes 1 2 4 8 16 32]

For each batch size (in images) and with/without the TTA views, feeds real
photos already resized to the model's input size (what the service feeds it)
and prints the first call's time (one-time per-shape cost, what warm-up must
pay) and the median of the following calls, per batch and per image:

- ``signature``: the SavedModel's ``serving_default`` concrete function, the
  way :class:`inference.classifier.Classifier` calls it;
- ``predict``: the naive baseline, one Keras ``Model.predict`` call per batch on
  the same SavedModel wrapped in ``keras.layers.TFSMLayer`` (what a Keras
  upload demo does per request; each call builds a tf.data pipeline).

TensorFlow uses its default thread pools (all cores) unless
``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` are set.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.harness import ROOT, machine_summary, photo_summary, real_photos, table  # noqa: E402
from inference.images import decode_image  # noqa: E402
from inference.tta import DEFAULT_VIEWS, tta_batch  # noqa: E402

BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def load_signature(model_dir):
    """``(serving_default concrete function, (height, width))`` of a SavedModel."""
    module = tf.saved_model.load(str(model_dir))
    image_size = tuple(int(side) for side in module.signatures["metadata"]()["image_size"].numpy())
    return module.signatures["serving_default"], image_size


def model_inputs(photos, image_size):
    """Decode JPEG ``photos`` and resize them to ``image_size`` ``(height, width)``.

    Returns:
        ``uint8`` array ``(len(photos), height, width, 3)``.
    """
    height, width = image_size
    return np.stack([_resized(decode_image(data), (width, height)) for data in photos])


def _resized(pixels, size):
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))


def view_batch(images, count, views):
    """The first ``count`` images (cycling) with their TTA ``views``, as one batch."""
    picked = [images[i % len(images)] for i in range(count)]
    return np.concatenate([tta_batch(image, views) for image in picked])


def time_calls(call, batch, min_seconds=0.5, min_calls=5):
    """Time ``call(batch)``: the first call, then the median of the following ones.

    Returns:
        ``(first call seconds, median seconds)``.
    """
    started = time.perf_counter()
    call(batch)
    first = time.perf_counter() - started
    call(batch)  # a second warm-up call: some kernels settle only then
    times = []
    while len(times) < min_calls or sum(times) < min_seconds:
        started = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - started)
    return first, float(np.median(times))


def signature_call(signature):
    """``batch -> probabilities`` through the concrete function, as the service calls it."""
    return lambda batch: signature(images=tf.convert_to_tensor(batch, dtype=tf.uint8))["probabilities"].numpy()


def keras_predict_call(model_dir):
    """``batch -> probabilities`` through ``keras.Model.predict`` (the naive baseline)."""
    import keras

    inputs = keras.Input((None, None, 3), dtype="uint8")
    outputs = keras.layers.TFSMLayer(str(model_dir), call_endpoint="serving_default")(inputs)
    model = keras.Model(inputs, outputs["probabilities"])
    return lambda batch: model.predict(batch, verbose=0)


def measure(model_dir, batch_sizes, photos, with_predict=True, min_seconds=0.5):
    """Forward times of the bare model.

    Returns:
        ``list`` of ``dict`` with ``images``, ``views`` (per image), ``rows``
        (batch dimension), and per calling style (``signature``, ``predict``)
        ``first_s`` and ``median_s``.
    """
    signature, image_size = load_signature(model_dir)
    images = model_inputs(photos, image_size)
    callers = {"signature": signature_call(signature)}
    if with_predict:
        callers["predict"] = keras_predict_call(model_dir)
    results = []
    for views in (DEFAULT_VIEWS[:1], DEFAULT_VIEWS):
        for count in batch_sizes:
            batch = view_batch(images, count, views)
            row = {"images": count, "views": len(views), "rows": len(batch)}
            for name, call in callers.items():
                print(f"  {name}: {count} image(s) x {len(views)} view(s)", file=sys.stderr, flush=True)
                first, median = time_calls(call, batch, min_seconds)
                row[name] = {"first_s": first, "median_s": median}
            results.append(row)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "model"), help="SavedModel directory (default: model/)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES, help="images per batch")
    parser.add_argument("--photos", type=int, default=32, help="distinct real photos (about 100 KB) to cycle through")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="timing per configuration, after warm-up")
    parser.add_argument("--no-predict", action="store_true", help="skip the Keras model.predict baseline")
    args = parser.parse_args(argv)
    photos = real_photos(args.photos)
    print(machine_summary())
    print(photo_summary(photos) + f", resized to the model's input size; TF intra-op threads: "
          f"{os.environ.get('TF_NUM_INTRAOP_THREADS', 'default (all cores)')}")
    results = measure(args.model, args.batch_sizes, photos, not args.no_predict, args.min_seconds)
    headers = ["TTA", "images", "rows", "first ms", "ms/batch", "ms/image", "images/s"]
    if not args.no_predict:
        headers += ["predict first ms", "predict ms/batch", "predict images/s"]
    rows = []
    for r in results:
        s = r["signature"]
        row = ["on" if r["views"] > 1 else "off", r["images"], r["rows"], f"{s['first_s'] * 1e3:.0f}",
               f"{s['median_s'] * 1e3:.1f}", f"{s['median_s'] * 1e3 / r['images']:.2f}",
               f"{r['images'] / s['median_s']:.0f}"]
        if "predict" in r:
            p = r["predict"]
            row += [f"{p['first_s'] * 1e3:.0f}", f"{p['median_s'] * 1e3:.1f}", f"{r['images'] / p['median_s']:.0f}"]
        rows.append(row)
    print(table(headers, rows))


if __name__ == "__main__":
    main()
