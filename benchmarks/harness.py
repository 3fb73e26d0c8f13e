"""What the benchmark scripts share: real photos, the machine, gunicorn on
loopback, a bounded load generator and plain-text tables."""

import http.client
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
from PIL import Image
from urllib3 import encode_multipart_formdata

from inference.contract import SERVING_SIGNATURE

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CARCLF_SHARED", ROOT.parent / "shared"))
CARS = SHARED / "data" / "cars-ru10"
# The servers' gunicorn: this Python's, or that of another environment, e.g. a virtual environment holding
# requirements-serve.txt only, as the Docker image does (docs/performance.md).
GUNICORN = Path(os.environ.get("CARCLF_BENCH_GUNICORN") or Path(sys.executable).with_name("gunicorn"))


def require_photos():
    """The cars-ru10 dataset root; exits with one line when ../shared is absent."""
    if not CARS.is_dir():
        sys.exit(f"error: {CARS} is absent (real photos live in ../shared; set CARCLF_SHARED to elsewhere)")
    return CARS


def real_photo_paths(count, target_bytes=100_000):
    """The ``count`` JPEGs of cars-ru10 whose file size is closest to ``target_bytes``.

    Returns:
        ``list[pathlib.Path]``, in a fixed order.
    """
    paths = sorted(require_photos().glob("*/*.jpg"), key=lambda p: (abs(p.stat().st_size - target_bytes), p.name))
    return paths[:count]


def real_photos(count, target_bytes=100_000):
    """The encoded files of ``real_photo_paths``: ``list[bytes]``."""
    return [path.read_bytes() for path in real_photo_paths(count, target_bytes)]


def photo_summary(photos):
    """One line: how many photos, their median size in KB and pixels."""
    sizes = [Image.open(io.BytesIO(data)).size for data in photos]
    kb = statistics.median(len(data) for data in photos) / 1000
    width, height = np.median(np.array(sizes), axis=0).astype(int)
    return f"{len(photos)} real JPEGs from {CARS.name}, median {kb:.0f} KB, {width}x{height} px"


# The CPU features int8 inference speeds up with (ONNX Runtime's integer kernels): AVX-512 VNNI or
# AVX-VNNI (8-bit dot products), AMX (matrix tiles); AVX-512 BF16 beside them (docs/int8.md).
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def cpu_flags():
    """Which of ``INT8_FLAGS`` this CPU has (``/proc/cpuinfo``; empty elsewhere): ``list[str]``."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    return [flag for flag in INT8_FLAGS if flag in flags]


def machine_summary():
    """Date (UTC), CPU model, core count, the CPU flags of ``INT8_FLAGS``, Python, and the load
    average before the run."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC | {model} | {os.cpu_count()} cores | "
        f"flags: {' '.join(cpu_flags()) or 'none of ' + ' '.join(INT8_FLAGS)} | "
        f"Python {platform.python_version()} | load average before: {load}"
    )


def table(headers, rows):
    """Format ``rows`` (lists of cells; floats printed as given) as an aligned text table."""
    cells = [list(map(str, headers))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def multipart(data, filename="car.jpg", field="file"):
    """A ``multipart/form-data`` body with one file field (``multipart_form``).

    Returns:
        ``(body bytes, content-type header value)``.
    """
    return multipart_form((field, filename, data))


def multipart_form(*parts, boundary=None):
    """A ``multipart/form-data`` body (RFC 7578, urllib3's encoder) of ``(name, filename or None, bytes)``
    parts: a part with a file name is a file (``Content-Type: image/jpeg``), one without a text field.

    Args:
        boundary: the delimiter; ``None``: a new random one.

    Returns:
        ``(body bytes, content-type header value)``.
    """
    fields = [(name, data if filename is None else (filename, data, "image/jpeg")) for name, filename, data in parts]
    return encode_multipart_formdata(fields, boundary)


class Server:
    """gunicorn on a free loopback port (``127.0.0.1`` only), as a context manager.

    Args:
        app: WSGI target, e.g. ``wsgi:app``.
        env: extra environment variables (``WEB_CONCURRENCY``, ``CARCLF_*``...).
        ready_timeout: seconds to wait for readiness before giving up.
        front: start the production stack instead (``deploy/start.sh``, as
            ``make serve-prod`` and the Docker image do: nginx on the port,
            gunicorn behind it on a unix socket); needs ``nginx`` on ``PATH``.
        root: the checkout to serve from (its ``wsgi.py``, ``gunicorn.conf.py``
            and code); default this one (``benchmarks/revisions.py`` passes another).

    Attributes:
        host, port: where it listens.
        cold_start_s: seconds from launching gunicorn to the first 200 from
            ``/readyz`` (or ``/healthz`` where the app has no ``/readyz``).
        ready_path: which of the two answered.

    Raises:
        RuntimeError: gunicorn exited or was not ready in time (its log tail in the message).
    """

    def __init__(self, app="wsgi:app", env=None, ready_timeout=120, front=False, root=ROOT):
        self.app, self.env, self.ready_timeout, self.front, self.root = app, env or {}, ready_timeout, front, root
        self.host, self.port = "127.0.0.1", free_port()

    def __enter__(self):
        address = f"{self.host}:{self.port}"
        env = {**os.environ, "BIND": address, "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}
        command = [str(GUNICORN), self.app]
        if self.front:  # nginx on the port; start.sh sets gunicorn's BIND; gunicorn from this Python's venv
            env.update(LISTEN=address, PATH=f"{GUNICORN.parent}{os.pathsep}{env.get('PATH', '')}")
            command = [str(self.root / "deploy" / "start.sh")]
        handle, self.log_path = tempfile.mkstemp(prefix="carclf-bench-", suffix=".log")
        self._log = os.fdopen(handle, "w")
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=self._log, stderr=self._log)
        try:
            self.ready_path = self._wait_ready(started)
        except BaseException:
            self.__exit__()
            raise
        self.cold_start_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()
        os.unlink(self.log_path)

    def _wait_ready(self, started):
        path = "/readyz"
        while time.perf_counter() - started < self.ready_timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_tail()}")
            status = self.get(path)
            if status == 200:
                return path
            if status == 404 and path == "/readyz":
                path = "/healthz"  # an app without a readiness endpoint: alive means ready
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn not ready within {self.ready_timeout} s: {self.log_tail()}")

    def get(self, path, timeout=1.0):
        """HTTP status of ``GET path``, or ``None`` when nothing answers in time."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except OSError:
            return None
        finally:
            connection.close()

    def master(self):
        """``psutil.Process`` of the gunicorn master (the process started, or start.sh's child)."""
        process = psutil.Process(self.process.pid)
        if not self.front:
            return process
        return next(child for child in process.children() if "gunicorn" in " ".join(child.cmdline()))

    def workers(self):
        """``psutil.Process`` of each live gunicorn worker."""
        return self.master().children()

    def log_tail(self, chars=2000):
        """The last ``chars`` characters of gunicorn's log (stdout and stderr; all with ``None``)."""
        text = Path(self.log_path).read_text()
        return text if chars is None else text[-chars:]


def free_port():
    """A loopback TCP port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PeakRss:
    """The peak resident memory (RSS) of processes, as a context manager.

    A background thread samples each process every ``interval`` seconds with
    psutil and, on Linux, also reads the kernel's high-water mark (``VmHWM`` in
    ``/proc/PID/status``), which catches peaks between samples. ``peak`` maps
    each PID to its largest RSS in bytes.
    """

    def __init__(self, processes, interval=0.1):
        self.processes, self.interval, self.peak = processes, interval, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while True:
            for process in self.processes:
                try:
                    rss = max(process.memory_info().rss, _high_water_mark(process.pid))
                except (psutil.Error, OSError):
                    continue
                self.peak[process.pid] = max(self.peak.get(process.pid, 0), rss)
            if self._stop.wait(self.interval):
                return


def load(host, port, path, bodies, concurrency, requests, timeout=60):
    """Send ``requests`` POSTs from ``concurrency`` client threads, each on its
    own keep-alive connection, cycling through ``bodies``.

    Args:
        bodies: ``list`` of ``(body bytes, content type)`` from ``multipart``.

    Returns:
        ``dict``: ``latencies_s`` (``np.ndarray`` of successful requests, in
        seconds), ``failures`` (``list`` of ``(status or exception text)``),
        ``elapsed_s`` (wall time of the whole run), ``throughput`` (successful
        requests per second), ``client_cpu_s`` (CPU seconds of the client threads
        together: on the same machine they take cores from the service).
    """
    lock = threading.Lock()
    next_index = iter(range(requests))
    latencies, failures, client_cpu = [], [], []

    def client():
        cpu_started = time.thread_time()
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            body, content_type = bodies[index % len(bodies)]
            started = time.perf_counter()
            try:
                connection.request("POST", path, body, {"Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                status = f"{type(error).__name__}: {error}"
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
            elapsed = time.perf_counter() - started
            with lock:
                (latencies.append(elapsed) if status == 200 else failures.append(status))
        connection.close()
        with lock:
            client_cpu.append(time.thread_time() - cpu_started)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "latencies_s": np.array(latencies),
        "failures": failures,
        "elapsed_s": elapsed,
        "throughput": len(latencies) / elapsed,
        "client_cpu_s": sum(client_cpu),
    }


def _high_water_mark(pid):
    """Peak RSS in bytes from ``/proc/PID/status`` (Linux), else 0."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return 0
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def cpu_seconds(processes):
    """CPU time (user + system) the processes have used so far, in seconds."""
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def time_calls(call, batch, min_seconds=0.5, min_calls=5, callers=1):
    """Time ``call(batch)``: the first call, then the following ones.

    Args:
        callers: threads calling side by side; with more than one, each makes
            calls until ``min_seconds`` have passed.

    Returns:
        ``(first call seconds, seconds per call)``: the median call with one
        caller; with several, the wall time over the number of calls (what
        sets the throughput).
    """
    started = time.perf_counter()
    call(batch)
    first = time.perf_counter() - started
    call(batch)  # a second warm-up call: some kernels settle only then
    if callers > 1:
        counts = [0] * callers
        deadline = time.perf_counter() + min_seconds

        def caller(index):
            while time.perf_counter() < deadline or counts[index] < min_calls:
                call(batch)
                counts[index] += 1

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return first, (time.perf_counter() - started) / sum(counts)
    times = []
    while len(times) < min_calls or sum(times) < min_seconds:
        started = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - started)
    return first, float(np.median(times))


def keras_predict_call(model_dir):
    """``batch -> probabilities`` through ``keras.Model.predict`` (the naive baseline)."""
    import keras

    inputs = keras.Input((None, None, 3), dtype="uint8")
    outputs = keras.layers.TFSMLayer(str(model_dir), call_endpoint=SERVING_SIGNATURE)(inputs)
    model = keras.Model(inputs, outputs["probabilities"])
    return lambda batch: model.predict(batch, verbose=0)
