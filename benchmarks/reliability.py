"""Hostile clients and faults against the service as users run it: the figures of docs/reliability.md.

    python -m benchmarks.reliability [--target front|gunicorn] [--probes slow bombs flood malformed kill reload]
                                     [--seconds 30] [--clients 32] [--env NAME=VALUE ...]

``--target front`` (default) starts the production stack (``deploy/start.sh``,
what ``make serve-prod`` and the Docker image run: nginx on a free loopback
port, gunicorn behind it); ``--target gunicorn`` starts bare ``gunicorn
wsgi:app`` on the port, as ``make serve`` does, for comparison. Every probe
stays on 127.0.0.1 (hostile clients send from 127.0.0.2, as another address),
bounded in count and time. Probes:

- ``slow``: ``--clients`` connections trickle header bytes (one every 2 s,
  reconnecting when closed) and as many trickle a multipart body, for
  ``--seconds``; meanwhile one normal client sends ``/healthz`` and
  ``/predict`` (a real photo) in turn: how many answered, the slowest.
- ``bombs``: 16 concurrent PNGs of 39.7 Mpx (132 KB, flat colour), then 16 at
  the full-size limit (16 Mpx): the answers and what they add to the worker's
  peak resident memory.
- ``flood``: four concurrent 9 MB JSON bodies of 800,000 instances: the
  answers and the worker's CPU time per body.
- ``malformed``: bad chunk sizes, missing chunk terminators, JSON nested
  10,000 deep, bad request lines: the answers (no 5xx) and the worker's pid.
- ``kill``: 16 clients post real photos while the worker is killed (SIGKILL)
  after 3 s: failed requests; then ``carclf_http_requests_in_flight``.
- ``reload``: the same with a reload (SIGHUP to gunicorn's master).

Needs ../shared (real photos) and, for the front, ``nginx`` on ``PATH``.
"""

import argparse
import io
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter

from PIL import Image

from benchmarks.harness import PeakRss, Server, cpu_seconds, load, machine_summary, multipart, real_photos, table

HOSTILE = "127.0.0.2"  # another loopback address: its own per-address limits, as an attacker's would be
BOMB_SIZES = {"39.7 Mpx PNG": (7000, 5671), "16 Mpx PNG (full-size limit)": (4000, 4000)}


def flat_png(width, height):
    """A PNG of ``width x height`` pixels, one colour but a corner: a few hundred KB at most."""
    image = Image.new("RGB", (width, height), (90, 120, 200))
    image.paste((200, 30, 30), (0, 0, 64, 64))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def request(server, method, path, body=b"", headers=None, timeout=10.0):
    """One request on a new connection: ``(status or error text, seconds, body)``."""
    started = time.perf_counter()
    head = [f"{method} {path} HTTP/1.1", f"Host: {server.host}", "Connection: close",
            f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return raw(server, ("\r\n".join(head) + "\r\n\r\n").encode() + body, timeout, started)


def raw(server, data, timeout=10.0, started=None):
    """Send exact bytes, read the answer until the server closes: ``(status or error text, seconds, body)``."""
    started = started or time.perf_counter()
    try:
        with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
            sock.sendall(data)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as error:
        return type(error).__name__, time.perf_counter() - started, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else "no answer"
    return status, time.perf_counter() - started, body


class Tricklers:
    """``count`` connections from ``HOSTILE`` that send a request a few bytes at a time,
    reconnecting whenever the server closes one, until stopped (a context manager).

    Args:
        kind: ``"header"`` (header lines, one byte every ``interval`` s) or
            ``"body"`` (a whole header announcing a 1 MB multipart body, then
            one body byte every ``interval`` s).

    Attributes:
        connections: how many connections were opened in all.
    """

    def __init__(self, server, count, kind="header", interval=2.0):
        self.server, self.count, self.kind, self.interval = server, count, kind, interval
        self.connections = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self):
        while not self._stop.is_set():
            try:
                with socket.create_connection((self.server.host, self.server.port), timeout=5,
                                              source_address=(HOSTILE, 0)) as sock:
                    self.connections += 1
                    self._trickle(sock)
            except OSError:
                self._stop.wait(0.2)  # closed by the server (timeout, 408, 429): come back

    def _trickle(self, sock):
        if self.kind == "header":
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
            filler = b"X-Slow: " + b"a" * 4000
        else:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                         b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
            filler = b"a" * 1_000_000
        for byte in filler:
            if self._stop.wait(self.interval):
                return
            sock.sendall(bytes([byte]))


def probe_slow(server, photo, clients, seconds):
    """Normal requests while ``clients`` header and ``clients`` body tricklers hold on for ``seconds``."""
    body, content_type = multipart(photo)
    results = []
    with Tricklers(server, clients, "header") as headers, Tricklers(server, clients, "body") as bodies:
        time.sleep(min(3.0, seconds / 4))  # let them all connect and start trickling
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            results.append(request(server, "GET", "/healthz", timeout=5))
            results.append(request(server, "POST", "/predict", body, {"Content-Type": content_type}, timeout=5))
            time.sleep(0.2)
    ok = [seconds for status, seconds, _ in results if status == 200]
    failed = Counter(str(status) for status, _, _ in results if status != 200)
    return [[f"{clients} header + {clients} body tricklers, {seconds} s", len(results), len(ok),
             dict(failed) or "-", f"{max(ok, default=float('nan')):.2f}",
             headers.connections + bodies.connections]]


def probe_bombs(server):
    """16 concurrent PNG bombs of each ``BOMB_SIZES``: answers and the worker's added peak RSS."""
    rows = []
    for name, size in BOMB_SIZES.items():
        data = flat_png(*size)
        body, content_type = multipart(data, "bomb.png")
        worker = server.workers()[0]
        reset_peak_rss(worker.pid)
        before = worker.memory_info().rss
        with PeakRss([worker], interval=0.02) as rss:
            run = load(server.host, server.port, "/predict", [(body, content_type)], 16, 16)
        statuses = Counter(["200"] * len(run["latencies_s"]) + [str(f) for f in run["failures"]])
        rows.append([f"16 x {name}, {len(data) / 1000:.0f} KB", dict(statuses),
                     f"{(rss.peak[worker.pid] - before) / 2**20:.0f}", f"{run['elapsed_s']:.1f}"])
    return rows


def reset_peak_rss(pid):
    """Reset the kernel's peak-RSS mark of ``pid`` (``VmHWM``, Linux), so a peak is this probe's."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass  # not Linux or not allowed: PeakRss's samples still count


def probe_flood(server, bodies=4, instances=800_000):
    """``bodies`` concurrent JSON bodies of ``instances`` empty instances: answers, worker CPU per body."""
    flood = b'{"instances": [' + b",".join([b'{"b64": ""}'] * instances) + b"]}"
    workers = server.workers()
    cpu = cpu_seconds(workers)
    run = load(server.host, server.port, "/predict", [(flood, "application/json")], bodies, bodies)
    statuses = Counter(str(status) for status in run["failures"])  # 400 is the expected answer
    return [[f"{bodies} x {instances:,} instances, {len(flood) / 2**20:.1f} MiB", dict(statuses),
             f"{(cpu_seconds(workers) - cpu) / bodies:.3f}", f"{run['elapsed_s']:.2f}"]]


def closing(data):
    """``data`` with ``Connection: close`` after its request line, so the answer ends with the connection."""
    return data.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1)


MALFORMED = {name: closing(data) for name, data in {
    "chunk size not hexadecimal": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "chunk without its CRLF": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    "JSON nested 10,000 deep": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 20000\r\n\r\n" + b"[" * 10_000 + b"]" * 10_000,
    "request line garbage": b"GARBAGE\r\n\r\n",
    "header line without colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n",
    "URL of 10,000 bytes": b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header of 10,000 bytes": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n",
}.items()}


def probe_malformed(server):
    """Each ``MALFORMED`` request: status, error code, and whether the worker survived."""
    before = {worker.pid for worker in server.workers()}
    rows = []
    for name, data in MALFORMED.items():
        status, _, body = raw(server, data)
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "not JSON" if body else "-"
        rows.append([name, status, code, before == {worker.pid for worker in server.workers()}])
    return rows


def probe_restart(server, photos, how, clients=16, requests=1500):
    """``requests`` posts from ``clients`` while the worker is killed (``kill``) or gunicorn
    reloads (``reload``) after 3 s: failures, then the in-flight gauge once idle."""
    bodies = [multipart(data) for data in photos]
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        load(server.host, server.port, "/predict", bodies, clients, requests)))
    thread.start()
    time.sleep(3)
    old = {worker.pid for worker in server.workers()}
    if how == "kill":
        os.kill(next(iter(old)), signal.SIGKILL)
    else:
        server.master().send_signal(signal.SIGHUP)
    thread.join()
    _, _, metrics = request(server, "GET", "/metrics")
    in_flight = next((line.split()[-1] for line in metrics.decode().splitlines()
                      if line.startswith("carclf_http_requests_in_flight")), "?")
    failures = Counter(map(str, result["failures"]))
    latencies = result["latencies_s"]
    return [[f"{how} after 3 s, {clients} clients", requests, len(result["failures"]),
             f"{100 * len(result['failures']) / requests:.2f}%", dict(failures) or "-",
             f"{latencies.max():.1f}", in_flight, old != {worker.pid for worker in server.workers()}]]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["front", "gunicorn"], default="front")
    parser.add_argument("--probes", nargs="+", default=["slow", "bombs", "flood", "malformed", "kill", "reload"],
                        choices=["slow", "bombs", "flood", "malformed", "kill", "reload"])
    parser.add_argument("--seconds", type=int, default=30, help="how long the slow clients hold on")
    parser.add_argument("--clients", type=int, default=32, help="slow clients of each kind")
    parser.add_argument("--env", nargs="+", default=[], metavar="NAME=VALUE",
                        help="environment for the service, e.g. CARCLF_MAX_PIXELS_FULL=40000000")
    args = parser.parse_args(argv)
    photos = real_photos(32)
    print(machine_summary())
    print(f"target: {'deploy/start.sh (nginx in front of gunicorn)' if args.target == 'front' else 'bare gunicorn'}")
    if args.env:
        print("service environment: " + " ".join(args.env))
    with Server(env=dict(item.split("=", 1) for item in args.env), front=args.target == "front") as server:
        print(f"ready after {server.cold_start_s:.1f} s", file=sys.stderr, flush=True)
        for probe in args.probes:
            print(f"\n[{probe}]", flush=True)
            if probe == "slow":
                print(table(["hostile clients", "normal requests", "answered 200", "failed", "slowest 200 s",
                             "hostile connections"], probe_slow(server, photos[0], args.clients, args.seconds)))
            elif probe == "bombs":
                print(table(["bodies", "answers", "added peak RSS MB", "seconds"], probe_bombs(server)))
            elif probe == "flood":
                print(table(["bodies", "answers", "worker CPU s per body", "seconds"], probe_flood(server)))
            elif probe == "malformed":
                print(table(["request", "status", "code", "same worker"], probe_malformed(server)))
            else:
                print(table(["fault", "requests", "failed", "failed %", "failures", "slowest s",
                             "in-flight gauge after", "worker replaced"], probe_restart(server, photos, probe)))


if __name__ == "__main__":
    main()
