"""Inference shared by the web service and the training tools.

Decoding of uploaded bytes (:mod:`inference.images`), the model contract and
its input (:mod:`inference.contract`), test-time augmentation views
(:mod:`inference.tta`), and the served model, a
:class:`inference.predictor.Predictor` that :func:`inference.loading.load_predictor`
opens from a model folder (:mod:`inference.model_folder`) on one of three
runtimes: ONNX Runtime (:mod:`inference.ort`, the ``.onnx`` beside the
SavedModel, the default), LiteRT (:mod:`inference.litert`, the ``.tflite``;
both lend their passes through :mod:`inference.passes`) or TensorFlow
(:mod:`inference.savedmodel`); several folders make an
:class:`inference.ensemble.Ensemble`. Depends on Pillow, NumPy and the chosen
runtime only.
"""

# Here, not in inference.model_folder, so that the service's settings (app.config,
# read by gunicorn's master too) name them without importing NumPy or Pillow.
RUNTIMES = ("onnxruntime", "litert", "tensorflow")
DEFAULT_RUNTIME = "onnxruntime"
