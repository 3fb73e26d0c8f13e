"""Fine-tuning throughput on this CPU: every layer vs the part above a cut (cached activations), fp32 vs bf16.

    python -m benchmarks.finetune_throughput [--size 448] [--cuts 4 5 6] [--batch 32] [--steps 6]

For EfficientNet-Lite0 with bilinear pooling (the Stanford Cars presets), in one run:

- ``lower``: images/s of the lower part's inference pass that builds the activation cache
  (``training.fitting.activation_cache``), per cut;
- ``upper``: training images/s of the part above each cut on activations (what an epoch of
  cached fine-tuning costs), and ``full``: of every layer on pixels (uncached fine-tuning);

each under Keras' ``float32`` and ``mixed_bfloat16`` policies (oneDNN runs bfloat16 on CPUs
with AVX-512 BF16 or AMX; the CPU's flags are printed). Inputs are random: the cost does not
depend on the pixels. Each figure is the median of the steps after the first (which traces).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import machine_summary, table  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.fitting.activation_cache import split_classifier  # noqa: E402
from training.fitting.distribute import precision  # noqa: E402
from training.model import build_classifier, set_trainable  # noqa: E402

POLICIES = {"fp32": "off", "bf16": "bfloat16"}


def cpu_flags() -> str:
    """The CPU's bfloat16 and int8 flags (``/proc/cpuinfo``), or ``none``."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = [flag for flag in flags if flag.startswith("amx") or flag in ("avx512_bf16", "avx512_vnni")]
    return " ".join(wanted) or "none"


def per_second(step, batch: int, steps: int) -> float:
    """Images per second of ``step()`` on batches of ``batch``: the median step after the first."""
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return batch / statistics.median(seconds[1:])


def measure(config: TrainConfig, cut: int | None, batch: int, steps: int) -> dict[str, float]:
    """``{"lower": views/s, "upper": images/s}`` at ``cut``, or ``{"full": images/s}`` without one."""
    rng = np.random.default_rng(0)
    model, backbone = build_classifier(config, 196)
    size = config.export_image_size()
    pixels = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    targets = keras.utils.to_categorical(rng.integers(0, 196, batch), 196)
    if cut is None:
        set_trainable(backbone, 1.0)
        trained, inputs = model, pixels
        figures = {}
    else:
        split = split_classifier(model, backbone, cut)
        inputs = np.asarray(split.lower.predict_on_batch(pixels), np.float32)
        figures = {"lower": per_second(lambda: split.lower.predict_on_batch(pixels), batch, steps)}
        set_trainable(split.upper_backbone, 1.0)
        trained = split.upper
    trained.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
    name = "full" if cut is None else "upper"
    figures[name] = per_second(lambda: trained.train_on_batch(inputs, targets), batch, steps)
    return figures


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finetune_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=448, help="input side in pixels")
    parser.add_argument("--cuts", type=int, nargs="+", default=[4, 5, 6], help="block groups to cut after")
    parser.add_argument("--batch", type=int, default=32, help="images per step")
    parser.add_argument("--steps", type=int, default=6, help="steps per figure, the first not counted")
    parser.add_argument("--precisions", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = parser.parse_args(argv)
    print(machine_summary())
    print(f"CPU flags: {cpu_flags()}; EfficientNet-Lite0, bilinear pooling, {args.size} px, batch {args.batch}")
    rows = []
    for name in args.precisions:
        with precision(POLICIES[name]) as policy:
            config = TrainConfig(data=["-"], out="-", weights="none", image_size=args.size, pooling="bilinear",
                                 stages=[])
            for cut in [*args.cuts, None]:
                keras.backend.clear_session()
                figures = measure(config, cut, args.batch, args.steps)
                rows.append([name, policy, "every layer" if cut is None else f"above group {cut}",
                             f"{figures['lower']:.1f}" if "lower" in figures else "",
                             f"{figures.get('upper', figures.get('full', 0.0)):.1f}"])
                print(rows[-1], flush=True)
    print(table(["precision", "Keras policy", "trained", "cache pass, views/s", "training, images/s"], rows))


if __name__ == "__main__":
    main()
