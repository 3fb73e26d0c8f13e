"""gunicorn settings, each overridable by an environment variable.

gunicorn reads this file from the working directory. Chosen from measurements
on 2 cores (``benchmarks/service.py``; README "Performance"):

- one worker (``WEB_CONCURRENCY``): each worker loads TensorFlow and the
  model (about 0.8-0.9 GB resident), and one worker's dynamic batching
  already keeps both cores busy;
- per worker, its share of the cores runs batched forward passes side by
  side (``CARCLF_BATCH_THREADS``, one per core, TF Serving's advice for CPU),
  each pass on one core (``TF_NUM_INTRAOP_THREADS=1``): a forward pass of a
  few images uses two cores poorly (e.g. 16 rows: 41 ms on two cores, 55 ms
  on one), and a free core takes the HTTP and decoding work meanwhile.
  ``TF_NUM_INTEROP_THREADS`` matches the batch threads: with one inter-op
  thread, concurrent passes run one after the other;
- threads (``GUNICORN_THREADS``): requests in flight per worker, 8: enough for
  two batches of 4 TTA requests while the next ones are decoded;
- no ``preload_app``: each worker loads TensorFlow and the model after the
  fork, since TensorFlow's thread pools and the batch threads do not survive
  a fork;
- ``timeout``: start-up (importing TensorFlow, loading and warming up the
  model) takes seconds on a busy machine; requests never block the worker's
  main thread, so this only catches a hung worker. No ``max_requests``:
  a restart would cost a cold start, and the load test shows no growth.
"""

import os

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
accesslog = "-"

# Read when each worker imports TensorFlow and builds the app: environment
# variables, unlike tf.config.threading calls, need no code in the app. The
# cores are those this process may run on; under a CPU quota (docker --cpus)
# set CARCLF_BATCH_THREADS and TF_NUM_INTEROP_THREADS to the quota instead.
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_cores_per_worker = str(max(1, _cores // workers))
os.environ.setdefault("CARCLF_BATCH_THREADS", _cores_per_worker)
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", _cores_per_worker)
