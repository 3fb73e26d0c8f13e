"""Inference shared by the web service and the training tools.

Decoding of uploaded bytes (:mod:`inference.images`), test-time augmentation
views (:mod:`inference.tta`) and the exported SavedModel wrapper
(:mod:`inference.classifier`). Depends on TensorFlow, Pillow and NumPy only.
"""
