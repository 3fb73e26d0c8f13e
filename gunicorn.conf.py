"""gunicorn settings, each overridable by an environment variable.

gunicorn reads this file from the working directory. Chosen from measurements
on 2 cores (``benchmarks/service.py``, ``benchmarks/runtimes.py``; figures in
README "Performance"):

- one worker (``WEB_CONCURRENCY``): one worker keeps both cores busy, as
  ONNX Runtime and LiteRT release the GIL while they run; two workers (one
  single-threaded pass each) measured slower on 2 cores with the shipped
  model: 8 clients 0.78x against 0.84-0.91x the bare model, and a lone request
  2.17x (its two views one after the other), at 207 MB per worker
  (README "Performance"). On TensorFlow
  (``CARCLF_RUNTIME=tensorflow``) a worker holds about 0.7 GB: keep one;
- per worker, ONNX Runtime (the default runtime): one session whose passes
  run side by side on its one copy of the weights, one single-threaded pass
  per core of the worker (``CARCLF_INTERPRETERS`` = cores per worker,
  ``CARCLF_INTERPRETER_THREADS=1``): a request's two TTA views run side by
  side, and the worker stays under 250 MB (217-224 MB on 2 cores, README
  "Performance"). LiteRT (``CARCLF_RUNTIME=litert``): one interpreter whose
  passes use the worker's cores (``CARCLF_INTERPRETERS=1``,
  ``CARCLF_INTERPRETER_THREADS`` = cores per worker), within 250 MB
  (226-227 MB), as each further interpreter packs the weights again (two
  single-threaded ones: 276-280 MB, ``inference/litert.py``), but 8 clients
  then get 0.76x the bare model. TensorFlow,
  ``TF_NUM_INTRAOP_THREADS=1`` and ``TF_NUM_INTEROP_THREADS`` = cores per
  worker: one core per pass costs 3.4-4 ms per image at any batch
  size, while two cores per pass save little on the few images a request
  brings and take the core that decodes the next requests (8 concurrent TTA
  clients: 180 requests/s; 120 with default TensorFlow threads and 4 gunicorn
  threads);
- threads (``GUNICORN_THREADS``): requests in flight per worker, 8;
- no ``preload_app``: each worker loads its runtime and the model after the
  fork, since TensorFlow's thread pools do not survive a fork (ONNX Runtime
  and LiteRT load in a fraction of a second anyway);
- ``timeout``: start-up (importing TensorFlow, loading and warming up the
  model) takes seconds on a busy machine; requests never block the worker's
  main thread, so this only catches a hung worker. No ``max_requests``:
  a restart would cost a cold start, and the load test shows no growth.
"""

import os

from app.logs import GUNICORN_LOGCONFIG
from inference import DEFAULT_RUNTIME

# Loopback unless told otherwise (HOST, or BIND: the Docker image and make serve-prod bind a unix socket behind nginx).
bind = os.environ.get("BIND", f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))

# One log stream (app/logs.py): gunicorn's own lines as JSON on stderr, like the
# app's; no access log, since the app writes a JSON line per request.
logconfig_dict = GUNICORN_LOGCONFIG
# gunicorn 27's control socket (gunicornc) is not used here; off, so that no
# socket is shared by parallel servers or refused in a read-only HOME.
control_socket_disable = True

# Read when each worker imports TensorFlow and builds the app: environment
# variables, unlike tf.config.threading calls, need no code in the app. The
# cores are those this process may run on; under a CPU quota (docker --cpus)
# set CARCLF_INTERPRETERS (or CARCLF_INTERPRETER_THREADS) and TF_NUM_INTEROP_THREADS to the quota instead.
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_cores_per_worker = str(max(1, _cores // workers))
# Passes side by side and threads per pass (see above): LiteRT's interpreters each pack the weights,
# ONNX Runtime's passes share its session's.
_litert = os.environ.get("CARCLF_RUNTIME", DEFAULT_RUNTIME).strip().lower() == "litert"
_passes, _threads = ("1", _cores_per_worker) if _litert else (_cores_per_worker, "1")
os.environ.setdefault("CARCLF_INTERPRETERS", _passes)
os.environ.setdefault("CARCLF_INTERPRETER_THREADS", _threads)
# NumPy's BLAS on one thread: the known-model test's small products (one image's features against
# the calibration) cost more in hand-offs between BLAS threads than they gain, and requests already
# run side by side (2 cores, busy machine: 11 ms with two threads, 0.3 ms with one).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", _cores_per_worker)


def child_exit(server, worker):
    """A worker ended (killed, crashed or replaced): drop its live gauges
    (``carclf_http_requests_in_flight``) from the multiprocess metrics, which
    would otherwise count its last value forever."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
