"""Peak resident memory of training runs against the number of photos, and of one feature pass per batch size.

    python -m benchmarks.training_memory runs [--config configs/shipped.yaml] [--data DIR] [--repeats 1 4]
    python -m benchmarks.training_memory feature-pass [--batch-sizes 8 32]

``runs``: ``carclf train`` with the config on the photos of ``--data`` (default
``../shared/data/cars-ru10``) listed ``N`` times over (a ``labels.csv`` naming each
file ``N`` times, each copy its own group), one fresh process per ``N``; prints
the child's peak resident memory (its ``ru_maxrss`` from ``wait4``, what ``/usr/bin/time
-v`` reports) and the per-phase peaks the run wrote into its ``metrics.json``.

``feature-pass``: the shipped model's feature pass (EfficientNet-Lite0 at 380 + 300 +
224 px, a compiled graph; ``--eager``: called eagerly, as the linear probe did before)
over 128 training photos at each batch size, a fresh process
each; prints the peak and the activation bytes per input pixel that
``training.memory.ACTIVATION_BYTES_PER_PIXEL`` rounds up.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, machine_summary, table

SIDES = (380, 300, 224)
PASS = """
import sys
from training.config import TrainConfig, read_config_file
from training.data.dataset import load_samples, make_dataset, split_by_group
from training.memory import peak_bytes, resident_bytes
from training.model import FEATURES_LAYER, build_classifier
import keras
config = TrainConfig.from_dict({**read_config_file("configs/shipped.yaml"), "data": [sys.argv[1]], "out": "-"})
samples, labels = load_samples(config.data)
train, _ = split_by_group(samples, config.val_fraction, config.seed)
model, _ = build_classifier(config, len(labels))
extractor = keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output)
before = resident_bytes()
for pixels, _ in make_dataset(train[:128], labels, 380, int(sys.argv[2])):
    extractor(pixels, training=False) if sys.argv[3] == "eager" else extractor.predict_on_batch(pixels)
print(before, peak_bytes())
"""


def repeated_root(data: Path, repeats: int, folder: Path) -> Path:
    """A dataset root whose ``labels.csv`` lists every photo of the ImageFolder ``data`` ``repeats`` times."""
    from training.data.dataset import load_samples

    samples, _ = load_samples(data)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        for copy in range(repeats):
            writer.writerows([sample.path, sample.label, f"{copy}:{sample.group}"] for sample in samples)
    return folder


def run(config: str, root: Path, out: Path) -> tuple[int, dict[str, Any]]:
    """``carclf train`` in a child process: ``(its peak resident bytes, metrics.json's "memory")``.

    Raises:
        subprocess.CalledProcessError: the run failed.
    """
    command = [sys.executable, "-m", "training.cli", "train", "--config", config, "--data", str(root),
               "--out", str(out)]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (Linux: ru_maxrss in KiB)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    return usage.ru_maxrss * 1024, json.loads((out / "metrics.json").read_text())["memory"]


def runs(args: argparse.Namespace) -> None:
    """Print the peak of each run against its photo count."""
    rows = []
    for repeats in args.repeats:
        with tempfile.TemporaryDirectory() as scratch:
            root = repeated_root(Path(args.data), repeats, Path(scratch))
            photos = sum(1 for _ in open(root / "labels.csv")) - 1
            peak, memory = run(args.config, root, Path(scratch) / "out")
        phases = ", ".join(f"{name} {phase['peak_gb']}" for name, phase in memory["phases"].items())
        rows.append([repeats, photos, f"{peak / 1e9:.2f}", phases])
        print(rows[-1], flush=True)
    print(table(["repeats", "photos", "peak GB (ru_maxrss)", "phase peaks, GB (metrics.json)"], rows))


def feature_pass(args: argparse.Namespace) -> None:
    """Print a feature pass's peak per batch size and the activation bytes per input pixel."""
    rows, peaks = [], {}
    for batch in args.batch_sizes:
        mode = "eager" if args.eager else "graph"
        output = subprocess.run([sys.executable, "-c", PASS, args.data, str(batch), mode], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.split()
        before, peaks[batch] = int(output[-2]), int(output[-1])
        rows.append([batch, f"{before / 1e9:.2f}", f"{peaks[batch] / 1e9:.2f}"])
    print(table(["batch", "resident before, GB", "peak, GB"], rows))
    low, high = min(peaks), max(peaks)
    if high > low:
        per_pixel = (peaks[high] - peaks[low]) / (high - low) / sum(side * side for side in SIDES)
        print(f"activation bytes per input pixel: {per_pixel:.0f} (batches {low} and {high})")


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen measurement."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cars-ru10"), help="dataset root")
    commands = parser.add_subparsers(dest="command", required=True)
    measured = commands.add_parser("runs", help="training runs on the photos repeated")
    measured.add_argument("--config", default="configs/shipped.yaml", help="training config")
    measured.add_argument("--repeats", type=int, nargs="+", default=[1, 4], help="how many times each photo is listed")
    measured.set_defaults(measure=runs)
    passes = commands.add_parser("feature-pass", help="one feature pass per batch size")
    passes.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    passes.add_argument("--eager", action="store_true", help="call the model eagerly, as the probe did before "
                        "issue 30 (batch by batch, no compiled graph)")
    passes.set_defaults(measure=feature_pass)
    args = parser.parse_args(argv)
    print(machine_summary())
    args.measure(args)


if __name__ == "__main__":
    main()
