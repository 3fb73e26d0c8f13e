"""The runtimes of the same model, side by side in one run: ONNX Runtime, LiteRT and TensorFlow.

    python -m benchmarks.runtimes [--rounds 10] [--calls 20]

Each runtime runs in a process of its own, as a gunicorn worker would (one
thread per forward pass: ``TF_NUM_INTRAOP_THREADS=1``; LiteRT's interpreter
and ONNX Runtime's passes on one thread), started one after the other and then timed in interleaved
rounds (a round: ``--calls`` forward passes of each runtime in turn), so that
a busy machine slows both alike and the ratios hold. Prints per runtime:
spawn to first prediction (import, load, one call), median forward time of a
lone request's batch without TTA (1 row) and with TTA (2 rows), the ratio to
the fastest, and peak resident memory after these calls; and on real photos the
largest probability difference from TensorFlow's and whether the top classes agree.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.harness import ROOT, machine_summary, photo_summary, real_photo_paths, real_photos, table

RUNTIME_ENV = {"tensorflow": {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}, "litert": {},
               "onnxruntime": {}}

# The child: load the model, answer "ROWS CALLS" lines with the median seconds per call, "probabilities" with
# the probabilities of the photos, "rss" with its peak RSS. Everything on one line of JSON per answer.
CHILD = """
import json, sys, time
import numpy as np
from inference.images import decode_image, resize
from inference.loading import load_predictor
started = time.perf_counter()
model = load_predictor(sys.argv[1], sys.argv[2])
photos = [open(path, "rb").read() for path in sys.argv[3:]]
size = model.image_size[::-1]
images = np.stack([resize(decode_image(data, min_size=size), size) for data in photos])
model.predict(images[:1])
print(json.dumps(time.perf_counter() - started), flush=True)
for line in sys.stdin:
    command = line.split()
    if command[0] == "probabilities":
        answer = model.predict(images)[1].tolist()
    elif command[0] == "rss":
        answer = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
    else:
        rows, calls = int(command[0]), int(command[1])
        batch = images[:rows]
        model.predict(batch)
        times = []
        for _ in range(calls):
            begun = time.perf_counter()
            model.predict(batch)
            times.append(time.perf_counter() - begun)
        answer = float(np.median(times))
    print(json.dumps(answer), flush=True)
"""


class Child:
    """One runtime in its own process (see ``CHILD``).

    Attributes:
        spawn_s: seconds from starting the process to its first prediction.
    """

    def __init__(self, model_dir, runtime, photo_paths):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **RUNTIME_ENV[runtime]}
        started = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-c", CHILD, str(model_dir), runtime, *photo_paths],
                                        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        json.loads(self.process.stdout.readline())
        self.spawn_s = time.perf_counter() - started

    def ask(self, command):
        """Send one command line; its JSON answer."""
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runtimes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "model"), help="model folder (default: model/)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=20, help="forward passes per runtime and round")
    parser.add_argument("--photos", type=int, default=32, help="distinct real photos (about 100 KB)")
    args = parser.parse_args(argv)
    print(machine_summary())
    print(photo_summary(real_photos(args.photos)) + ", resized to the model's input size")
    paths = real_photo_paths(args.photos)
    children = {runtime: Child(args.model, runtime, [str(path) for path in paths]) for runtime in RUNTIME_ENV}
    times = {(runtime, rows): [] for runtime in children for rows in (1, 2)}
    for _ in range(args.rounds):
        for rows in (1, 2):
            for runtime, child in children.items():
                times[runtime, rows].append(child.ask(f"{rows} {args.calls}"))
    medians = {key: float(np.median(values)) for key, values in times.items()}
    fastest = {rows: min(medians[runtime, rows] for runtime in children) for rows in (1, 2)}
    rss = {runtime: child.ask("rss") for runtime, child in children.items()}  # before the larger parity batch
    probabilities = {runtime: np.array(child.ask("probabilities")) for runtime, child in children.items()}
    for child in children.values():
        child.close()
    rows = [[runtime, f"{children[runtime].spawn_s:.2f}",
             *(f"{medians[runtime, n] * 1e3:.1f} ({medians[runtime, n] / fastest[n]:.2f}x)" for n in (1, 2)),
             f"{rss[runtime] / 2**20:.0f}"] for runtime in children]
    print(table(["runtime", "spawn to 1st prediction s", "1 row ms (x fastest)", "2 rows ms (x fastest)",
                 "peak RSS MB"], rows))
    print(f"\n{args.rounds} rounds x {args.calls} calls per runtime and batch, interleaved; on {len(paths)} photos:")
    expected = probabilities["tensorflow"]
    for runtime in ("litert", "onnxruntime"):
        difference = np.abs(probabilities[runtime] - expected).max()
        same = np.mean(probabilities[runtime].argmax(1) == expected.argmax(1))
        print(f"{runtime}'s probabilities are within {difference:.1e} of TensorFlow's, top class {same:.0%} identical")


if __name__ == "__main__":
    main()
