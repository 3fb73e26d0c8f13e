# The car-model classifier service: nginx in front of gunicorn + Flask + the model in model/,
# on ONNX Runtime (model.onnx; no TensorFlow in the image) unless built with RUNTIME=litert (model.tflite)
# or RUNTIME=tensorflow (the SavedModel):
#   docker build -t car-classifier .
#   docker build --build-arg RUNTIME=litert -t car-classifier:litert .
#   docker build --build-arg RUNTIME=tensorflow -t car-classifier:tensorflow .
#   docker build --build-arg PRECISION=int8 -t car-classifier:int8 .   (model.int8.onnx on ONNX Runtime: docs/int8.md)
#   docker run -p 8000:8000 car-classifier
# nginx (Debian's) listens on $PORT and hands whole requests to gunicorn on a
# unix socket: slow clients never hold a gunicorn thread (deploy/, docs/reliability.md).
# Configuration is by environment variables only (docs/configuration.md).
# The base is pinned to an exact Python and Debian release; to pin its digest too:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm  ->  FROM python:3.11.14-slim-bookworm@sha256:...
# onnxruntime: requirements-serve.txt; litert: requirements-serve-litert.txt; tensorflow:
# requirements-serve-tensorflow.txt (sizes: docs/deployment.md).
ARG RUNTIME=onnxruntime
# float32, or int8 (ONNX Runtime only): the image's CARCLF_PRECISION, and the one model file it carries.
ARG PRECISION=float32

# The model folder holds the model four times (SavedModel, model.onnx, model.tflite, model.int8.onnx):
# this stage keeps the runtime's copy at the precision only, so that the image's model layer holds
# one (docs/deployment.md).
FROM python:3.11.14-slim-bookworm AS model
ARG RUNTIME
ARG PRECISION
COPY model/ /model/
COPY deploy/slim-model.sh /usr/local/bin/
RUN slim-model.sh "$RUNTIME" /model "$PRECISION"

FROM python:3.11.14-slim-bookworm
ARG RUNTIME
ARG PRECISION

# MALLOC_ARENA_MAX: two glibc malloc arenas instead of one per thread, about
# 35 MB less resident memory per worker (docs/performance.md).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MALLOC_ARENA_MAX=2 \
    PORT=8000 \
    CARCLF_RUNTIME=${RUNTIME} \
    CARCLF_PRECISION=${PRECISION} \
    PROMETHEUS_MULTIPROC_DIR=/tmp/carclf-metrics

WORKDIR /srv
# Debian's nginx, the front of the service (deploy/start.sh runs it as user 10001).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/*
# The service's hashed lock for its runtime (make lock); wheels only (no compiler in the
# slim image, none needed), no pip cache left behind. The locks are read through a bind
# mount of the build context, so that no layer holds them.
RUN --mount=type=bind,target=/context \
    case "$RUNTIME" in \
        onnxruntime) lock=requirements-serve.txt ;; \
        litert|tensorflow) lock="requirements-serve-$RUNTIME.txt" ;; \
        *) echo "RUNTIME must be onnxruntime, litert or tensorflow, not '$RUNTIME'" >&2; exit 1 ;; \
    esac \
    && python -m pip install --require-hashes --only-binary=:all: -r "/context/$lock" \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin app

COPY app/ app/
COPY inference/ inference/
COPY templates/ templates/
COPY static/ static/
COPY --from=model /model/ model/
COPY wsgi.py gunicorn.conf.py ./
COPY deploy/ deploy/

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"
# nginx on 0.0.0.0:$PORT, gunicorn on a unix socket; wipes PROMETHEUS_MULTIPROC_DIR at each start.
CMD ["deploy/start.sh"]
