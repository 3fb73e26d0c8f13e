"""A deliberately naive variant of the service, for comparison only.

The design of most Flask + Keras upload demos: one Keras ``Model.predict``
call per request (here on the shipped SavedModel wrapped in
``keras.layers.TFSMLayer``), no batching across requests, no warm-up. It
decodes and builds the TTA views exactly as the real service does, so the
difference measured by ``benchmarks/service.py`` is the forward-pass design
alone. Run by the benchmark as ``gunicorn benchmarks.naive_app:app``.
"""

import os

from flask import Flask, jsonify, request

from app.api import top_predictions
from app.config import DEFAULT_MODEL_DIR
from benchmarks.harness import keras_predict_call
from inference.contract import model_input
from inference.images import DEFAULT_MAX_PIXELS
from inference.savedmodel import TensorFlowClassifier
from inference.tta import SERVED_VIEWS, tta_batch

model_dir = os.environ.get("CARCLF_MODEL_DIR", str(DEFAULT_MODEL_DIR))
classifier = TensorFlowClassifier(model_dir)  # labels, decoding and top-k only
predict = keras_predict_call(model_dir)
app = Flask(__name__)


@app.post("/predict")
def predict_route():
    """``file``: the photo; ``?tta=0`` turns TTA off. Returns the top 3 labels."""
    image = model_input(request.files["file"].read(), classifier.image_size, DEFAULT_MAX_PIXELS)
    views = SERVED_VIEWS[request.args.get("tta") != "0"]
    probabilities = predict(tta_batch(image, views)).mean(axis=0)
    return jsonify(predictions=top_predictions(classifier.labels, probabilities, 3), tta_views=len(views))


@app.get("/healthz")
def healthz():
    """200 once the module (and so the model) is loaded."""
    return jsonify(status="ok")
