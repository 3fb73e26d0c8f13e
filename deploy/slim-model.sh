#!/bin/sh
# Removes from a model folder the files that RUNTIME does not load, so that the
# Docker image (its "model" stage) ships one copy of the model, not three:
#   deploy/slim-model.sh RUNTIME MODEL_DIR
# onnxruntime serves model.onnx, litert model.tflite (each with metadata.json),
# tensorflow the SavedModel; every runtime reads the calibration and
# metrics.json, and the small JSON files and the model card stay.
set -eu
case "${1:-}" in
    onnxruntime) drop="saved_model.pb fingerprint.pb variables model.tflite" ;;
    litert) drop="saved_model.pb fingerprint.pb variables model.onnx" ;;
    tensorflow) drop="model.onnx model.tflite" ;;
    *) echo "usage: deploy/slim-model.sh onnxruntime|litert|tensorflow MODEL_DIR (not '${1:-}')" >&2; exit 2 ;;
esac
[ -d "${2:-}" ] || { echo "deploy/slim-model.sh: no model folder '${2:-}'" >&2; exit 2; }
for name in $drop; do
    rm -rf "${2:?}/$name"
done
