"""Inference shared by the web service and the training tools.

Decoding of uploaded bytes (:mod:`inference.images`), test-time augmentation
views (:mod:`inference.tta`), and the served model on one of three runtimes
(:mod:`inference.runtime`): ONNX Runtime (:mod:`inference.ort`, the ``.onnx``
beside the SavedModel, the default), LiteRT (:mod:`inference.litert`, the
``.tflite``) or TensorFlow (:mod:`inference.classifier`). Depends on Pillow,
NumPy and the chosen runtime only.
"""

# Here, not in inference.runtime, so that the service's settings (app.config,
# read by gunicorn's master too) name them without importing NumPy or Pillow.
RUNTIMES = ("onnxruntime", "litert", "tensorflow")
DEFAULT_RUNTIME = "onnxruntime"
