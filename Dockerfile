# The car-model classifier service: gunicorn + Flask + the SavedModel in model/.
#   docker build -t car-classifier .
#   docker run -p 8000:8000 car-classifier
FROM python:3.11-slim-bookworm

# MALLOC_ARENA_MAX: two glibc malloc arenas instead of one per thread, about
# 35 MB less resident memory per worker (README "Performance").
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MALLOC_ARENA_MAX=2 \
    PORT=8000

WORKDIR /srv
COPY requirements-serve.txt .
RUN python -m pip install -r requirements-serve.txt \
    && useradd --create-home --uid 10001 app

COPY app/ app/
COPY inference/ inference/
COPY templates/ templates/
COPY static/ static/
COPY model/ model/
COPY wsgi.py gunicorn.conf.py ./

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"
CMD ["gunicorn", "wsgi:app"]
