"""Load test: many requests at 16 concurrent clients, no failure, no worker restart.

    python -m benchmarks.load_test [--requests 1000] [--concurrency 16] [--precision int8]

Starts ``gunicorn wsgi:app`` on 127.0.0.1 with ``gunicorn.conf.py`` as
shipped, posts real ~100 KB JPEG photos from ../shared (TTA on, the default)
and prints PASS when every request got a 200 and the worker processes are
the same before and after (none was killed or restarted, e.g. by gunicorn's
timeout or for memory); otherwise prints FAIL and the reasons, exit status 1.
"""

import argparse
import sys
from collections import Counter

import numpy as np

from benchmarks.harness import PeakRss, Server, load, machine_summary, multipart, photo_summary, real_photos, table
from inference import PRECISIONS


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--photos", type=int, default=64, help="distinct real photos (about 100 KB) to cycle through")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="the server's CARCLF_PRECISION (int8: model.int8.onnx); default: %(default)s")
    args = parser.parse_args(argv)
    photos = real_photos(args.photos)
    print(machine_summary())
    print(f"{photo_summary(photos)}; precision {args.precision}")
    with Server(env={"CARCLF_PRECISION": args.precision}) as server:
        before = {worker.pid for worker in server.workers()}
        print(f"{len(before)} worker(s) ready after {server.cold_start_s:.1f} s; "
              f"{args.requests} requests, {args.concurrency} clients ...", file=sys.stderr, flush=True)
        with PeakRss(server.workers()) as rss:
            run = load(server.host, server.port, "/predict", [multipart(p) for p in photos],
                       args.concurrency, args.requests)
        after = {worker.pid for worker in server.workers()}
        log = server.log_tail(None)
    latencies = run["latencies_s"] * 1e3
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if len(latencies) else (np.nan,) * 3
    print(table(
        ["requests", "clients", "ok", "failed", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s", "workers",
         "restarted", "peak RSS/worker MB"],
        [[args.requests, args.concurrency, len(latencies), len(run["failures"]), f"{p50:.0f}", f"{p95:.0f}",
          f"{p99:.0f}", f"{latencies.max() if len(latencies) else np.nan:.0f}", f"{run['throughput']:.1f}",
          len(before), len(before - after), f"{max(rss.peak.values()) / 2**20:.0f}"]],
    ))
    problems = []
    if run["failures"]:
        problems.append(f"{len(run['failures'])} failed request(s): {dict(Counter(map(str, run['failures'])))}")
    if before != after:
        problems.append(f"workers changed: {sorted(before)} -> {sorted(after)}")
    if "WORKER TIMEOUT" in log or "was sent SIGKILL" in log:
        problems.append("gunicorn's log reports a worker timeout or kill")
    print("FAIL: " + "; ".join(problems) if problems else "PASS: every request answered 200, no worker restarted")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
