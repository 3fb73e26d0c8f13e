"""PNG plots (matplotlib, Agg backend) and short Markdown summaries.

- After training, ``write_training_report`` (called by
  ``training.fitting.run.train`` after export, and by ``carclf report``)
  writes ``<model>/report/``: ``learning_curves.png`` (loss, accuracy and
  learning rate per epoch, stages marked) and ``report.md``.
- After evaluation (``carclf evaluate ... --report DIR``),
  ``write_evaluation_report`` writes ``confusion_matrix.png``,
  ``mistakes.png`` (the most confident mistakes), ``reliability.png`` and
  ``report.md`` to ``DIR``.

Galleries show dataset photos: write them to output directories such as
``runs/``, never into the repository.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from sklearn.metrics import ConfusionMatrixDisplay

from inference.images import decode_image
from training.evaluation.metrics import reliability_bins

if TYPE_CHECKING:  # training.evaluation.predictions imports Keras
    from training.evaluation.predictions import Evaluation

matplotlib.use("Agg")  # files only, no display: before pyplot is first imported (by ConfusionMatrixDisplay.plot)

THUMBNAIL = 200  # gallery thumbnail side, pixels


GALLERY_SIZE = 24  # most photos in a gallery


DPI = 100
# Confusion matrices name their classes and count every cell up to this many classes.
NAMED_CLASSES = 30
WORST_CLASSES = 10  # classes listed by lowest recall

PathT = TypeVar("PathT", bound=Path | str)


def _save(figure: Figure, path: PathT) -> PathT:
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def plot_learning_curves(history: Sequence[Mapping[str, Any]], path: PathT) -> PathT:
    """Loss, accuracy and learning rate per epoch, one panel each, stages marked.

    Args:
        history: a parsed ``history.json``: ``list`` of per-stage ``dict`` with
            ``stage`` (``name``, ``learning_rate``...), and per-epoch lists
            ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and, when
            recorded (``LearningRateLogger``), ``learning_rate``.
        path: PNG file to write.

    Returns:
        ``path``. Without a recorded rate the stage's peak rate is drawn,
        dashed, and labelled as such.
    """
    figure = Figure(figsize=(9, 9))
    axes = figure.subplots(3, 1, sharex=True)
    first = 1
    for number, stage in enumerate(history):
        epochs = np.arange(first, first + len(stage.get("loss", [])))
        colour, name = f"C{number}", stage["stage"]["name"]
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, stage.get(metric, []), "-o", color=colour, markersize=3, label=f"{name} train")
            ax.plot(epochs, stage.get(f"val_{metric}", []), "--s", color=colour, markersize=3,
                    label=f"{name} validation")
        if "learning_rate" in stage:
            axes[2].plot(epochs, stage["learning_rate"], "-o", color=colour, markersize=3, label=name)
        else:
            axes[2].plot(epochs, [stage["stage"]["learning_rate"]] * len(epochs), "--", color=colour,
                         label=f"{name}: stage peak (per-epoch rate not recorded)")
        for ax in axes:
            ax.axvline(first - 0.5, color="grey", linewidth=0.8)
        axes[0].annotate(name, (first - 0.4, 1.0), xycoords=("data", "axes fraction"), va="top")
        first += len(epochs)
    for ax, label in zip(axes, ("loss", "accuracy", "learning rate")):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("epoch")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle("Learning curves (solid: training, dashed: validation)")
    return _save(figure, path)


def plot_confusion_matrix(
    targets: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], path: PathT, title: str
) -> PathT:
    """Counts of true (rows) against predicted (columns) classes, with
    scikit-learn's ``ConfusionMatrixDisplay``.

    Args:
        targets: ``int`` array ``(n,)``; probabilities: ``(n, len(labels))``.
        labels: class names; path: PNG file; title: figure title.

    Returns:
        ``path``.
    """
    named = len(labels) <= NAMED_CLASSES  # beyond, names and counts would not fit: colours only
    size = 2 + 0.6 * len(labels) if named else 14
    figure = Figure(figsize=(size + 1, size))
    ax = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        targets, np.argmax(probabilities, axis=1), labels=np.arange(len(labels)),
        display_labels=labels if named else None, include_values=named,
        xticks_rotation=45, cmap="Blues", ax=ax, colorbar=not named,
    )
    if not named:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title)
    return _save(figure, path)


def _thumbnail(path: Path | str) -> np.ndarray:
    """A photo decoded as in training, shrunk to at most ``THUMBNAIL`` pixels a side."""
    image = Image.fromarray(decode_image(Path(path).read_bytes(), min_size=(THUMBNAIL, THUMBNAIL)))
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    return np.asarray(image)


def plot_gallery(entries: Sequence[tuple[Path | str, str]], path: PathT, title: str, columns: int = 4) -> PathT:
    """A grid of photo thumbnails with captions.

    Args:
        entries: ``list`` of ``(image path, caption)``; the first
            ``GALLERY_SIZE`` are drawn.
        path: PNG file to write.
        title: figure title; an empty ``entries`` draws the title alone.
        columns: thumbnails per row.

    Returns:
        ``path``.
    """
    entries = entries[:GALLERY_SIZE]
    rows = max(1, -(-len(entries) // columns))
    figure = Figure(figsize=(3 * columns, 3.4 * rows if entries else 1))
    figure.suptitle(title)
    for index, (image_path, caption) in enumerate(entries):
        ax = figure.add_subplot(rows, columns, index + 1)
        ax.imshow(_thumbnail(image_path))
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    return _save(figure, path)


def plot_reliability(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: PathT) -> PathT:
    """Reliability diagrams (Guo et al. 2017, fig. 1): accuracy against
    confidence in 15 equal-width bins, one panel per curve, with the gap to the
    diagonal and the ECE.

    Args:
        curves: ``{title: (probabilities (n, num_classes), targets (n,), ece)}``.
        path: PNG file to write.

    Returns:
        ``path``.
    """
    figure = Figure(figsize=(4.5 * len(curves), 4.8))
    panels = np.atleast_1d(figure.subplots(1, len(curves)))
    for ax, (title, (probabilities, targets, ece)) in zip(panels, curves.items()):
        table = reliability_bins(probabilities, targets)
        width = 1 / len(table["edges"])
        centres = table["edges"] - width / 2
        filled = table["count"] > 0
        ax.bar(centres[filled], table["accuracy"][filled], width=width, edgecolor="black", label="accuracy")
        ax.bar(centres[filled], (table["confidence"] - table["accuracy"])[filled], bottom=table["accuracy"][filled],
               width=width, fill=False, edgecolor="red", hatch="//", label="gap to mean confidence")
        for x, count in zip(centres[filled], table["count"][filled]):
            ax.annotate(str(count), (x, 0.02), ha="center", fontsize=7, rotation=90)
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy",
               title=f"{title}\nECE {ece:.3f}, n={len(targets)}")
        ax.legend(loc="upper left", fontsize=8)
    return _save(figure, path)


def summary_table(metrics: Mapping[str, Any]) -> str:
    """A Markdown table of the key figures of
    ``training.evaluation.predictions.Evaluation.metrics``, one row per TTA view set."""
    rows = ["| TTA views | accuracy | top-2 | top-5 | macro-F1 | ECE | latency (ms/image) |",
            "|---|---|---|---|---|---|---|"]
    for name, block in [("none", metrics["no_tta"]), *metrics["tta"].items()]:
        views = "none (original only)" if name == "none" else f"{name}: {', '.join(block['views'])}"
        rows.append(f"| {views} | {block['accuracy']:.3f} | {block['top2_accuracy']:.3f} "
                    f"| {block['top5_accuracy']:.3f} | {block['macro_f1']:.3f} | {block['ece']:.3f} "
                    f"| {block['latency_ms']:.1f} |")
    return "\n".join(rows)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _per_class_table(block: Mapping[str, Any], classes: Sequence[str] | None = None) -> str:
    """Precision, recall and support of ``classes`` (default: all), in that order."""
    rows = ["| class | precision | recall | support |", "|---|---|---|---|"]
    for label in classes or block["per_class"]:
        figures = block["per_class"][label]
        rows.append(f"| {label} | {_figure(figures['precision'])} | {_figure(figures['recall'])} "
                    f"| {figures['support']} |")
    return "\n".join(rows)


def worst_classes(block: Mapping[str, Any], count: int = WORST_CLASSES) -> list[str]:
    """The ``count`` present classes of lowest recall (ties: lowest precision first)."""
    present = [(figures["recall"], figures["precision"] or 0.0, label)
               for label, figures in block["per_class"].items() if figures["support"]]
    return [label for _, _, label in sorted(present)[:count]]


def _look_alikes_section(block: Mapping[str, Any]) -> str:
    """The report's look-alike section, or ``""`` when no two classes differ by their year only."""
    found = block.get("look_alikes")
    if not found or not found["groups"]:
        return ""
    pairs = "\n".join(f"| {pair['true']} | {pair['predicted']} | {pair['count']} |" for pair in found["pairs"][:15])
    return f"""
## Look-alike classes (same make, model and body; another year)

{len(found['groups'])} groups of look-alike classes, {found['photos']} photos: {found['errors']} mistakes, of which
{found['within_group']} predict a look-alike of the true class.

| true | predicted | photos |
|---|---|---|
{pairs}
"""


def write_evaluation_report(evaluation: "Evaluation", out_dir: Path | str) -> Path:
    """Confusion matrix, mistakes gallery, reliability diagram and ``report.md``.

    The confusion matrix and the gallery use the first TTA view set (the
    service's, by default), or no TTA when none was measured.

    Args:
        evaluation: a ``training.evaluation.predictions.Evaluation``.
        out_dir: directory to write to (created); photos are drawn into it, so
            keep it out of the repository (e.g. ``runs/``).

    Returns:
        the ``Path`` of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluation.metrics
    name = next(iter(metrics["tta"]), "none")
    block = metrics["tta"].get(name, metrics["no_tta"])
    caption = "no TTA" if name == "none" else f"TTA {name}"
    probabilities = evaluation.probabilities[name]
    plot_confusion_matrix(evaluation.targets, probabilities, evaluation.labels, out / "confusion_matrix.png",
                          f"Confusion matrix ({caption}), {len(evaluation.targets)} photos")
    plot_gallery(
        [(e["path"], f"{e['file']}\ntrue: {e['label']}\npredicted: {e['predicted']} ({e['probability']:.2f})")
         for e in block["errors"]],
        out / "mistakes.png",
        f"Most confident mistakes ({caption}): {len(block['errors'])} of {len(evaluation.targets)} photos",
    )
    plot_reliability(
        {"no TTA": (evaluation.probabilities["none"], evaluation.targets, metrics["no_tta"]["ece"]),
         **({caption: (probabilities, evaluation.targets, block["ece"])} if name != "none" else {})},
        out / "reliability.png",
    )
    source = f"`{metrics['data']}` ({metrics['split']} split), " if "data" in metrics else ""
    models = ", ".join(f"`{model}`" for model in metrics["models"])
    if len(metrics["models"]) > 1:
        models += " (ensemble: probabilities averaged)"
    (out / "report.md").write_text(f"""# Evaluation report

Models: {models}.
Data: {source}{metrics['images']} photos, {len(metrics['labels'])} classes.
ECE: expected calibration error, 15 bins. Latency: median per image, views
and model(s), decoding excluded.

{summary_table(metrics)}

The confusion matrix, the gallery and the per-class figures use {caption}.

## Confusion matrix

![Confusion matrix](confusion_matrix.png)

## Most confident mistakes

{len(block['errors'])} mistakes; the gallery shows the first {min(len(block['errors']), GALLERY_SIZE)}.

![Most confident mistakes](mistakes.png)

## Reliability diagram

![Reliability diagram](reliability.png)

## Worst {WORST_CLASSES} classes by recall ({caption})

{_per_class_table(block, worst_classes(block))}
{_look_alikes_section(block)}
## Per class ({caption})

{_per_class_table(block)}
""")
    return out / "report.md"


def write_training_report(model_dir: Path | str) -> Path:
    """``<model_dir>/report/``: ``learning_curves.png`` and ``report.md`` from
    the run's ``history.json`` and ``metrics.json``.

    Returns:
        the ``Path`` of ``report.md``.

    Raises:
        FileNotFoundError: no ``history.json`` in ``model_dir``.
    """
    model_dir = Path(model_dir)
    history_path = model_dir / "history.json"
    if not history_path.is_file():
        raise FileNotFoundError(f"No history.json in '{model_dir}': is it a training run's output?")
    history = json.loads(history_path.read_text())
    out = model_dir / "report"
    out.mkdir(exist_ok=True)
    curves = "![Learning curves](learning_curves.png)"
    if history:
        plot_learning_curves(history, out / "learning_curves.png")
    else:
        curves = "No fine-tuning stage: the model is the linear probe, with no epochs to plot."
    stages = ["| stage | epochs run | peak learning rate | seconds | best validation accuracy |",
              "|---|---|---|---|---|"]
    for stage in history:
        best = max(stage.get("val_accuracy") or [float("nan")])
        stages.append(f"| {stage['stage']['name']} | {len(stage.get('loss', []))} "
                      f"| {stage['stage']['learning_rate']:g} | {stage.get('seconds', 'n/a')} | {best:.3f} |")
    metrics_path = model_dir / "metrics.json"
    validation = ""
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        validation = (f"Validation accuracy of the exported SavedModel: {metrics['accuracy']:.3f} without TTA, "
                      f"{metrics['accuracy_tta']:.3f} with TTA ({', '.join(metrics['tta_views'])})")
        if "no_tta" in metrics:
            validation += f"; ECE {metrics['no_tta']['ece']:.3f} without TTA, {metrics['tta']['ece']:.3f} with"
        validation += ".\n"
    (out / "report.md").write_text(f"""# Training report: `{model_dir.name}`

{validation}
{chr(10).join(stages)}

{curves}
""")
    return out / "report.md"
