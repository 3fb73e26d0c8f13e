"""Helpers the test modules share: the first photos of each class, encoded and synthetic images.

Free ports and multipart bodies: :mod:`benchmarks.harness` (the benchmarks use them too)."""

import io
import threading

import numpy as np
from PIL import Image


def first_per_class(samples, count=1):
    """The first ``count`` samples of each label, in the order of ``samples`` (labels in order of first sight).

    Returns:
        ``list[training.data.dataset.Sample]``, the samples of one label side by side.
    """
    chosen = {}
    for sample in samples:
        if len(chosen.setdefault(sample.label, [])) < count:
            chosen[sample.label].append(sample)
    return [sample for kept in chosen.values() for sample in kept]


def encode(image, fmt, **kwargs):
    """A Pillow ``image`` encoded as ``fmt`` (``"JPEG"``, ``"PNG"``...): ``bytes``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def synthetic_photo(seed, size=(96, 72)):
    """A reproducible RGB image ``size`` (width, height): a colour gradient plus noise, as JPEG ``bytes``."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(60, 200, 3)
    pixels = ramp + rng.normal(0, 25, (height, width, 3)) + rng.uniform(0, 50, 3)
    return encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=90)


def synthetic_dataset(root, classes=("a", "b"), per_class=4, size=(96, 72)):
    """An ImageFolder of :func:`synthetic_photo` JPEGs: ``root/<class>/<n>.jpg``; returns ``root``."""
    for index, label in enumerate(classes):
        (root / label).mkdir(parents=True)
        for number in range(per_class):
            (root / label / f"{number}.jpg").write_bytes(synthetic_photo(index * 1000 + number, size))
    return root


def call_concurrently(fn, inputs):
    """Call ``fn`` from one thread per input, released together; returns outputs or exceptions, in order."""
    results = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def caller(index):
        start.wait()
        try:
            results[index] = fn(inputs[index])
        except Exception as error:  # noqa: BLE001 - checked by the test
            results[index] = error

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
