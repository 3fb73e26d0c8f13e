"""gunicorn settings, each overridable by an environment variable.

gunicorn reads this file from the working directory. No ``preload_app``: each
worker loads TensorFlow and the model after the fork, since TensorFlow's
thread pools do not survive a fork.
"""

import os

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Loading TensorFlow and warming up the model takes seconds: allow it.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
accesslog = "-"
