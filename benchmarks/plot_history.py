"""The service's measured targets over time, plotted from the benchmark history.

    python -m benchmarks.plot_history [--history benchmarks/results/history.csv] [--out docs/performance-history.png]

Reads the history (one row per figure: date, time, model, runtime, whether the
setting was the service's default at the time, metric, value, the upper end of
a range, each round's value, the command that measured it) and draws, for the
rows of the default setting, the three targets of docs/performance.md against
time: a lone TTA request's p50 over the bare forward of its views, the requests
per second at 8 clients over the bare model's best photos per second, and a
worker's peak resident memory. Colour: the runtime; marker: the shipped model
of the time. Measures nothing itself.
"""

import argparse
import csv
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
HISTORY = ROOT / "benchmarks" / "results" / "history.csv"
FIGURE = ROOT / "docs" / "performance-history.png"
# metric -> (axis label, target, whether lower is better); the targets of docs/performance.md.
PANELS = {
    "lone_tta_p50_ratio": ("lone TTA request p50 / bare forward", 1.3, True),
    "clients8_tput_ratio": ("8 clients: requests/s / bare photos/s", 0.9, False),
    "worker_rss_mb": ("worker peak RSS (MB)", 250.0, True),
}
COLOURS = {"tensorflow": "tab:orange", "litert": "tab:blue", "onnxruntime": "tab:green"}
MARKERS = {"mobilenetv2-0.35-224": "s", "224px-issue12": "v", "lp-ft-300": "^", "multiscale-380": "o"}


def read_history(path: Path) -> list[dict[str, str]]:
    """The history's rows as read by ``csv.DictReader`` (every field a string; ``high`` and ``rounds`` may be
    empty).

    Raises:
        OSError: the file cannot be read.
        ValueError: a column this script reads is missing.
    """
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    columns = {"date", "time_utc", "model", "runtime", "default", "metric", "value", "high"}
    missing = columns - set(rows[0] if rows else ())
    if missing:
        raise ValueError(f"{path}: no column {sorted(missing)}")
    return rows


def when(row: dict[str, str]) -> datetime:
    """A row's start time (UTC, naive): its date and the first ``HH:MM`` of ``time_utc`` (midnight if none)."""
    time = row["time_utc"][:5] if row["time_utc"][:1].isdigit() else "00:00"
    return datetime.fromisoformat(f"{row['date']}T{time}")


def plot(rows: Sequence[dict[str, str]], out: Path) -> None:
    """Draw the ``PANELS`` metrics of the rows measured on the default setting into the PNG ``out``: one
    point per row, a vertical bar where the row gives a range (``value`` to ``high``), the target dashed.
    Runs are spaced evenly in time order (the days without runs take no room), ticks at each new day."""
    shown = sorted((row for row in rows if row["default"] == "yes" and row["metric"] in PANELS), key=when)
    runs = sorted({when(row) for row in shown})
    position = {time: index for index, time in enumerate(runs)}
    figure = Figure(figsize=(9, 8.5))  # no pyplot: no display, no global state
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    for axis, (metric, (label, target, lower_is_better)) in zip(axes, PANELS.items()):
        for row in shown:
            if row["metric"] != metric:
                continue
            low = float(row["value"])
            high = float(row["high"]) if row["high"] else low
            colour, marker, x = COLOURS[row["runtime"]], MARKERS[row["model"]], position[when(row)]
            axis.vlines(x, low, high, colors=colour, linewidth=2)
            axis.plot(x, (low + high) / 2, marker=marker, color=colour, linestyle="none")
        axis.axhline(target, color="grey", linestyle="--", linewidth=1)
        axis.annotate(f"target {'<=' if lower_is_better else '>='} {target:g}", (0.005, target), color="grey",
                      xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
        axis.set_ylabel(label, fontsize=9)
        axis.grid(alpha=0.3)
    # TensorFlow's 683-857 MB beside ONNX Runtime's ~220 MB, in plain numbers.
    axes[-1].set_yscale("log")
    axes[-1].set_yticks([200, 250, 300, 400, 600, 800], labels=["200", "250", "300", "400", "600", "800"])
    axes[-1].minorticks_off()
    days = {time.date(): index for index, time in reversed(list(enumerate(runs)))}
    axes[-1].set_xticks(list(days.values()), labels=[f"{day:%Y-%m-%d}" for day in days], rotation=30, ha="right")
    axes[-1].set_xlabel("runs in time order (UTC)", fontsize=9)
    for runtime, colour in COLOURS.items():
        axes[0].plot([], [], color=colour, marker="o", linestyle="none", label=runtime)
    for model, marker in MARKERS.items():
        axes[0].plot([], [], color="black", marker=marker, linestyle="none", fillstyle="none", label=model)
    axes[0].legend(fontsize=7, ncol=2, loc="upper right")
    axes[0].set_title("The service's default setting, as measured (benchmarks/results/history.csv)", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=100)


def main(argv: Sequence[str] | None = None) -> None:
    """Read the history, write the figure, print its path."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot_history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=Path, default=HISTORY, help="the history CSV (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=FIGURE, help="the PNG to write (default: %(default)s)")
    args = parser.parse_args(argv)
    plot(read_history(args.history), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
