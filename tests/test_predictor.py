"""The predictor protocol (inference.predictor): TensorFlowClassifier and Ensemble implement it,
an ensemble answers as its members averaged, and the service serves one."""

import io
import os

import numpy as np

from inference.contract import model_input
from inference.ensemble import Ensemble
from inference.loading import load_predictor
from inference.predictor import Predictor
from inference.savedmodel import TensorFlowClassifier
from inference.tta import predict_views
from tests.conftest import ready_app
from tests.helpers import synthetic_photo


def test_classifier_and_ensemble_are_predictors_and_an_ensemble_is_no_classifier(tiny_savedmodel):
    classifier = load_predictor(tiny_savedmodel, "tensorflow")
    assert type(classifier) is TensorFlowClassifier and isinstance(classifier, Predictor)
    ensemble = load_predictor(f"{tiny_savedmodel}{os.pathsep}{tiny_savedmodel}", "tensorflow")
    assert type(ensemble) is Ensemble and isinstance(ensemble, Predictor)
    assert type(load_predictor([tiny_savedmodel, tiny_savedmodel], "tensorflow")) is Ensemble


def test_an_ensemble_of_a_model_with_itself_answers_as_the_model(tiny_savedmodel):
    single = TensorFlowClassifier(tiny_savedmodel)
    twice = Ensemble([(str(tiny_savedmodel), single), (str(tiny_savedmodel), TensorFlowClassifier(tiny_savedmodel))])
    twice.warm_up()
    image = model_input(synthetic_photo(1), twice.image_size)
    assert image.shape == (*single.image_size, 3) and twice.labels == single.labels
    (logits, probabilities, features), alone = predict_views(twice, image), predict_views(single, image)
    np.testing.assert_allclose(probabilities, alone[1], atol=1e-6)
    np.testing.assert_allclose(logits, alone[0], atol=1e-5)
    np.testing.assert_array_equal(features, np.concatenate([alone[2], alone[2]]))
    assert twice.calibration is None and twice.metrics == {}
    assert twice.metadata["name"] == "car-model-classifier" and twice.metadata["version"] == "tiny+tiny"


def test_the_service_serves_an_ensemble(tiny_savedmodel):
    app = ready_app({"MODEL_DIR": f"{tiny_savedmodel}{os.pathsep}{tiny_savedmodel}", "RUNTIME": "tensorflow"})
    client = app.test_client()
    answer = client.post("/predict?tta=1", data={"file": (io.BytesIO(synthetic_photo(2)), "car.jpg")})
    assert answer.status_code == 200 and answer.json["tta_views"] == 2
    assert {p["label"] for p in answer.json["predictions"]} == {"a", "b"} and answer.json["known_model"] is None
    assert answer.json["model"] == {"name": "car-model-classifier", "version": "tiny+tiny"}
    assert client.get("/v1/models/car-model-classifier").json["known_model_test"] is None
