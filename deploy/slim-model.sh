#!/bin/sh
# Removes from a model folder the files that RUNTIME does not load at PRECISION, so that the
# Docker image (its "model" stage) ships one copy of the model, not four:
#   deploy/slim-model.sh RUNTIME MODEL_DIR [PRECISION]
# onnxruntime serves model.onnx (PRECISION float32, the default) or model.int8.onnx (int8),
# litert model.tflite (each with metadata.json), tensorflow the SavedModel; every runtime reads
# the calibration and metrics.json, and the small JSON files and the model card stay.
set -eu
precision="${3:-float32}"
case "${1:-}/$precision" in
    onnxruntime/float32) drop="saved_model.pb fingerprint.pb variables model.tflite model.int8.onnx" ;;
    onnxruntime/int8) drop="saved_model.pb fingerprint.pb variables model.tflite model.onnx" ;;
    litert/float32) drop="saved_model.pb fingerprint.pb variables model.onnx model.int8.onnx" ;;
    tensorflow/float32) drop="model.onnx model.tflite model.int8.onnx" ;;
    */int8) echo "deploy/slim-model.sh: int8 is served by onnxruntime only, not '${1:-}' (docs/int8.md)" >&2; exit 2 ;;
    *) echo "usage: deploy/slim-model.sh onnxruntime|litert|tensorflow MODEL_DIR [float32|int8] (not '${1:-}' '$precision')" >&2
       exit 2 ;;
esac
[ -d "${2:-}" ] || { echo "deploy/slim-model.sh: no model folder '${2:-}'" >&2; exit 2; }
[ "$precision" = float32 ] || [ -f "$2/model.int8.onnx" ] || {
    echo "deploy/slim-model.sh: no model.int8.onnx in '$2'; write it with 'carclf quantize $2 --data DIR'" >&2
    exit 2
}
for name in $drop; do
    rm -rf "${2:?}/$name"
done
