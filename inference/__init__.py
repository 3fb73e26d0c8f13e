"""Inference shared by the web service and the training tools.

Decoding of uploaded bytes (``inference.images``), the model contract and
its input (``inference.contract``), test-time augmentation views
(``inference.tta``), and the served model, a
``inference.predictor.Predictor`` that ``inference.loading.load_predictor``
opens from a model folder (``inference.model_folder``) on one of three
runtimes: ONNX Runtime (``inference.ort``, the ``.onnx`` beside the
SavedModel, the default), LiteRT (``inference.litert``, the ``.tflite``;
both lend their passes through ``inference.passes``) or TensorFlow
(``inference.savedmodel``); several folders make an
``inference.ensemble.Ensemble``. Depends on Pillow, NumPy and the chosen
runtime only.
"""

# Here, not in inference.model_folder, so that the service's settings (app.config,
# read by gunicorn's master too) name them without importing NumPy or Pillow.
RUNTIMES = ("onnxruntime", "litert", "tensorflow")
DEFAULT_RUNTIME = "onnxruntime"
# The served model's arithmetic: its float32 copies, or the int8 conversion of model.onnx (ONNX Runtime
# only: docs/int8.md). float32 until measurements on a quiet machine choose (docs/int8.md).
PRECISIONS = ("float32", "int8")
DEFAULT_PRECISION = "float32"
