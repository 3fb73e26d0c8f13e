"""The experiment runner on a dozen real photos: 2 group folds x 2 variants, 1-epoch stages."""

import json

import pytest

from tests.conftest import MOBILENET_WEIGHTS, require
from tests.helpers import carclf, carclf_error
from training.experiments.variants import BEGIN, END, load_variants

VARIANTS = """
base:
  backbone: MobileNetV2
  alpha: 0.35
  weights: {weights}
  image_size: 64
  batch_size: 4
  val_fraction: 0.5
  patience: 1
  stages: [head:1:1e-3:0, finetune:1:1e-4:0.3]
variants:
  staged: {{}}
  head-only:
    stages: [head:1:1e-3:0]
    schedule: cosine
"""


@pytest.mark.shared
def test_runner_trains_every_variant_on_the_same_folds_and_writes_the_table(tiny_dataset, tmp_path, capsys):
    variants = tmp_path / "variants.yaml"
    variants.write_text(VARIANTS.format(weights=require(MOBILENET_WEIGHTS)))
    table = tmp_path / "experiments.md"
    table.write_text(f"# My notes\n\nBefore.\n\n{BEGIN}\nold table\n{END}\n\nAfter.\n")
    args = ["--data", str(tiny_dataset), "--variants", str(variants), "--out", str(tmp_path / "exp"),
            "--folds", "2", "--table", str(table)]
    carclf("experiment", *args, "--views", "scales")
    results = [json.loads(line) for line in (tmp_path / "exp" / "results.jsonl").read_text().splitlines()]
    assert sorted((r["variant"], r["fold"]) for r in results) == [("head-only", 0), ("head-only", 1),
                                                                 ("staged", 0), ("staged", 1)]
    for name in ("staged", "head-only"):
        assert sum(r["held_out"] for r in results if r["variant"] == name) == 12
        assert all(0 <= r["accuracy"] <= 1 and r["train_seconds"] > 0 for r in results)
    assert [r["epochs"] for r in results if r["variant"] == "head-only"] == [1, 1]
    for r in results:  # the epoch exported, as the fold model's own metrics.json says
        kept = json.loads((tmp_path / "exp" / r["variant"] / f"fold{r['fold']}" / "metrics.json").read_text())
        assert r["kept_epoch"] == kept["kept_epoch"]["epoch"] <= r["epochs"]
    assert (tmp_path / "exp" / "staged" / "fold1" / "saved_model.pb").is_file()
    text = table.read_text()
    assert text.startswith("# My notes\n\nBefore.") and text.rstrip().endswith("After.") and "old table" not in text
    assert "| `head-only` | stages=head:1:0.001:0, schedule=cosine | 2 |" in text
    assert "paired Δ vs `staged`" in text and "--folds 2" in text
    first = next(r for r in results if (r["variant"], r["fold"]) == ("head-only", 0))
    cell = f"{first['accuracy']:.3f} / {first['accuracy_tta']:.3f} (epoch {first['kept_epoch']})"
    assert f"| `head-only` | {cell} |" in text
    assert text.count("| `scales` | original, crop_center, zoom_out | 2 |") == 2  # each variant's 2 fold models
    assert text.index("over the `staged` fold models") < text.index("over the `head-only` fold models")
    assert all(set(r["tta_sets"]) == {"none", "flip", "scales"} for r in results)

    trained = (tmp_path / "exp" / "staged" / "fold0" / "saved_model.pb").stat().st_mtime
    # All trained: only the new view set is measured.
    carclf("experiment", *args, "--views", "crops", "--only", "staged,head-only")
    again = [json.loads(line) for line in (tmp_path / "exp" / "results.jsonl").read_text().splitlines()]
    assert len(again) == 4 and all({"none", "flip", "scales", "crops"} <= set(r["tta_sets"]) for r in again)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in results]
    assert (tmp_path / "exp" / "staged" / "fold0" / "saved_model.pb").stat().st_mtime == trained
    text = table.read_text()  # the command printed rebuilds the whole table, every variant
    assert "--views crops" in text and "--only" not in text and "| `head-only` |" in text
    error = carclf_error(capsys, "experiment", *args, "--views", "sideways")
    assert "unknown TTA view set(s) ['sideways']" in error


def test_variants_are_checked_before_any_training(tmp_path, capsys):
    variants = tmp_path / "variants.yaml"
    variants.write_text("base: {backbone: MobileNetV2}\nvariants:\n  fast: {schedul: cosine}\n")
    with pytest.raises(ValueError, match="unknown config key"):
        load_variants(variants)
    error = carclf_error(capsys, "experiment", "--data", tmp_path, "--variants", variants, "--out", tmp_path / "o")
    assert "unknown config key(s) schedul" in error
