"""Exporting a trained classifier: the SavedModel, its LiteRT and ONNX conversions and their parity check."""
