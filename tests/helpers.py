"""Helpers the test modules share: the first photos of each class, encoded and synthetic images, free
ports and multipart bodies, concurrent calls, and carclf run in this process."""

import io
import socket
import threading

import numpy as np
import pytest
from PIL import Image
from urllib3 import encode_multipart_formdata


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
    """An ImageFolder of ``synthetic_photo`` JPEGs: ``root/<class>/<n>.jpg``; returns ``root``."""
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


def carclf(*args):
    """Run ``carclf ARGS`` in this process, as the console script runs it: returns on exit status 0,
    else its ``SystemExit`` propagates (click printed the error on stderr)."""
    from training.cli import main

    try:
        main([str(arg) for arg in args])
    except SystemExit as exit:
        if exit.code:
            raise


def carclf_error(capsys, *args):
    """The error line (``Error: ...``) of ``carclf ARGS``, which must fail: exit status 1, or 2 for a usage error."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        carclf(*args)
    assert caught.value.code in (1, 2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), lines
    return lines[-1]


def free_port():
    """A loopback TCP port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart_form(*parts, boundary=None):
    """A ``multipart/form-data`` body of ``(name, filename or None, bytes)`` parts: a part with a file
    name is a JPEG file, one without a text field. Returns ``(body bytes, content-type header value)``."""
    fields = [(name, data if filename is None else (filename, data, "image/jpeg")) for name, filename, data in parts]
    return encode_multipart_formdata(fields, boundary)
