"""Where a request's time goes around the model: each part of ``POST /predict``, timed alone.

    python -m benchmarks.request_parts [--photos 32] [--rounds 5] [--model model] [--precision int8]

In one process, with the shipped model on the default runtime (ONNX Runtime, one
thread): the whole request through Flask's test client (without TTA: one
forward pass; the JSON request log written to ``/dev/null``), then each
of its parts on the same real photos: multipart parsing (Werkzeug), decoding
(Pillow, at reduced size in the JPEG's DCT: draft mode; and, for comparison,
at full size as before draft mode; both also for a phone-sized 12 MP JPEG, a
real photo upscaled), decoding plus resizing to the model's
input, the TTA batch of the image and its mirror (and, for comparison, the
mirror as NumPy copied it before), the forward pass, the known-model test, the JSON answer and the JSON
log line. Medians per request in ms, and each part's share of the whole. The
HTTP server (gunicorn) and the network are not in it: ``benchmarks.service``
measures them.
"""

import argparse
import io
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from app import create_app
from app.logs import HANDLER_NAME, JsonFormatter
from benchmarks.harness import ROOT, machine_summary, photo_summary, real_photos, table
from inference import PRECISIONS
from inference.contract import model_input
from inference.images import decode_image
from inference.tta import SERVED_VIEWS, tta_batch

VIEWS = SERVED_VIEWS[False]  # the whole request and the known-model test: without TTA, one forward pass
TTA = SERVED_VIEWS[True]


def median_ms(call: Callable[[bytes], object], photos: Sequence[bytes], rounds: int) -> float:
    """Median milliseconds of ``call(photo)`` over ``rounds`` passes over ``photos`` (after one warm-up pass)."""
    for photo in photos:
        call(photo)
    times = []
    for _ in range(rounds):
        for photo in photos:
            started = time.perf_counter()
            call(photo)
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _phone_sized(photo: bytes) -> bytes:
    """``photo`` upscaled to 4032x3024 (a 12 MP phone camera's size) and encoded as JPEG, quality 90."""
    out = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC).save(out, "JPEG",
                                                                                                       quality=90)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_parts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=32, help="real photos of about 100 KB (default: 32)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the photos (default: 5)")
    parser.add_argument("--model", default=str(ROOT / "model"), help="model folder (default: the shipped model)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="int8: model.int8.onnx (docs/int8.md); default: %(default)s")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as gunicorn.conf.py sets it
    photos = real_photos(args.photos)
    app = create_app({"MODEL_DIR": args.model, "INTERPRETERS": 1, "PRECISION": args.precision})
    if app.extensions["model"].wait(120) != "ready":
        sys.exit(f"error: the model in {args.model} did not load")
    for handler in logging.getLogger().handlers:
        if handler.name == HANDLER_NAME and isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (open for the process's life)
    classifier = app.extensions["model"].classifier
    assert classifier is not None and classifier.calibration is not None
    size = classifier.image_size
    client = app.test_client()
    print(machine_summary())
    print(f"{photo_summary(photos)}; model input {size[1]}x{size[0]} px; runtime {app.config['RUNTIME']}, "
          f"{app.config['PRECISION']}")

    def request(photo: bytes) -> None:
        response = client.post("/predict?tta=0", data={"file": (io.BytesIO(photo), "car.jpg")})
        assert response.status_code == 200, response.get_data(as_text=True)

    def multipart(photo: bytes) -> None:
        environ = EnvironBuilder(method="POST", data={"file": (io.BytesIO(photo), "car.jpg")}).get_environ()
        parse_form_data(environ)[2]["file"].read()

    images = {photo: model_input(photo, classifier.image_size) for photo in photos}
    outputs = {photo: classifier.predict(images[photo][None]) for photo in photos}
    answer = client.post("/predict?tta=0", data={"file": (io.BytesIO(photos[0]), "car.jpg")}).get_json()
    record = logging.LogRecord("carclf.request", logging.INFO, __file__, 0, "request", None, None)
    record.fields = {"method": "POST", "path": "/predict", "status": 200, "ms": 12.3, "top": ["kia_rio"]}
    formatter = JsonFormatter()
    phone = _phone_sized(photos[0])
    parts: list[tuple[str, Callable[[bytes], object]]] = [
        ("whole request (Flask test client, no TTA)", request),
        ("multipart parsing (Werkzeug)", multipart),
        ("decode, draft mode (reduced size in the DCT)", lambda photo: decode_image(photo, min_size=size[::-1])),
        ("decode at full size (before draft mode)", decode_image),
        ("12 MP phone photo: decode, draft mode", lambda _: decode_image(phone, min_size=size[::-1])),
        ("12 MP phone photo: decode at full size", lambda _: decode_image(phone)),
        ("decode + resize to the model's input", lambda photo: model_input(photo, size)),
        ("TTA views: the image and its mirror (Pillow), stacked", lambda photo: tta_batch(images[photo], TTA)),
        ("the same, mirrored by NumPy (before 2026-11-27)",
         lambda photo: np.stack([images[photo], images[photo][:, ::-1]])),
        ("forward pass, 1 row", lambda photo: classifier.predict(images[photo][None])),
        ("known-model test", lambda photo: classifier.calibration.known_model(outputs[photo][2][0], VIEWS)),
        ("JSON answer (Flask's provider)", lambda photo: app.json.dumps(answer)),
        ("JSON log line (app.logs.JsonFormatter)", lambda photo: formatter.format(record)),
    ]
    measured = [(name, median_ms(call, photos, args.rounds)) for name, call in parts]
    whole = measured[0][1]
    rows = [[name, f"{ms:.2f}", f"{100 * ms / whole:.0f}%"] for name, ms in measured]
    print(table(["part", "ms (median)", "of the request"], rows))
    forward = dict(measured)["forward pass, 1 row"]
    print(f"Around the model: {whole - forward:.2f} ms of {whole:.2f} ms per request "
          f"({100 * (whole - forward) / whole:.0f}%).")


if __name__ == "__main__":
    main()
