"""carclf (training.cli): every subcommand answers --help without TensorFlow; train's options over a
config file, with one-line errors; TensorFlow's own log lines hidden unless --verbose."""

import subprocess
import sys
import tomllib

import click
import pytest

from tests.conftest import ROOT
from tests.helpers import carclf_error
from training.cli import NATIVE_LOG_LINE, _NativeLogFilter, cli, train, train_config
from training.config import Stage

CONFIGS = ROOT / "configs"
SUBCOMMANDS = ("train", "evaluate", "predict", "calibrate", "suspects", "experiment", "report", "convert", "quantize",
               "serve")


def train_config_of(*args):
    """The TrainConfig of ``carclf train ARGS``, without training."""
    with train.make_context("train", [str(arg) for arg in args]) as ctx:
        return train_config(ctx)


def test_help_lists_every_subcommand_and_none_imports_tensorflow():
    script = f"""import sys
from training.cli import main
def run(*argv):
    try:
        main(list(argv))
    except SystemExit as exit:
        assert exit.code in (0, 2), exit.code
run("--help")
for name in {SUBCOMMANDS!r}:
    run(name, "--help")
run("train", "--optimizer", "rmsprop")
print(sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras", "albumentations", "cv2")))
run("train", "--backbone", "Nope", "--data", "d", "--out", "o")  # checking a backbone name reads Keras
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    listed = result.stdout.split("Commands:")[1]
    assert all(f"\n  {name} " in listed for name in SUBCOMMANDS)
    for name in SUBCOMMANDS:
        assert f"Usage: carclf {name} [OPTIONS]" in result.stdout
    assert "--backbone NAME" in result.stdout and "--stage NAME:EPOCHS:LR:UNFREEZE[:BATCH[:SIZE]]" in result.stdout
    assert "'rmsprop' is not one of 'adam', 'adamw', 'sgd', 'nadam'" in result.stderr
    assert "backbone 'Nope' is not one of: EfficientNetB0" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"  # the heavy imports wait for the work itself


def test_yaml_preset_then_options_override():
    config = train_config_of("--config", CONFIGS / "progressive.yaml", "--data", "d1", "--data", "d2", "--out", "o",
                             "--optimizer", "nadam", "--train-bn", "--class-names", "a,b")
    assert config.data == ["d1", "d2"] and config.optimizer == "nadam" and config.train_bn
    assert config.class_names == ["a", "b"] and config.backbone == "MobileNetV2"
    assert [config.stage_image_size(s) for s in config.stages] == [224, 224, 288]
    assert [config.stage_batch_size(s) for s in config.stages] == [32, 32, 16]
    replaced = train_config_of("--config", CONFIGS / "progressive.yaml", "--data", "d", "--out", "o",
                               "--stage", "all:2:1e-4:1", "--no-train-bn")
    assert replaced.stages == [Stage("all", 2, 1e-4, 1.0)] and not replaced.train_bn
    defaults = train_config_of("--data", "d", "--out", "o")  # an option not given keeps the field's default
    assert defaults.deterministic and defaults.resume and defaults.multiscale_sides == [] and len(defaults.stages) == 2


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("schedule: weekly\n", ".yaml", "schedule 'weekly' is not one of"),
        ("learning_rte: 0.1\n", ".yaml", "unknown config key"),
        ("stages: [head:0:1e-3:0]\n", ".yaml", "epochs >= 1"),
        ("{not json", ".json", "cannot parse"),
        ("- a list\n", ".yaml", "must hold a mapping"),
        ("a: 1\n", ".toml", "must end in"),
    ],
)
def test_bad_config_files_fail_with_one_line(tmp_path, capsys, content, suffix, message):
    path = tmp_path / f"config{suffix}"
    path.write_text(content)
    assert message in carclf_error(capsys, "train", "--config", path, "--data", "d", "--out", "o")


def test_missing_required_and_bad_options(capsys):
    assert "--out is required" in carclf_error(capsys, "train", "--data", "d")
    with pytest.raises(click.BadParameter, match="stage 'head:1:fast:0': could not convert string to float"):
        train_config_of("--data", "d", "--out", "o", "--stage", "head:1:fast:0")
    assert "expected FOLDER=LABEL" in carclf_error(capsys, "calibrate", "--model", "m", "--data", "d",
                                                   "--other-angle", "no-label")
    assert "No such command 'fit'" in carclf_error(capsys, "fit")


def test_the_filter_drops_tensorflows_notices_and_keeps_everything_else():
    out = _Written()
    stream = _NativeLogFilter(out)
    stream.write("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\nI0000 00:")
    stream.write("00:1796689813.546405    6592 port.cc:153] oneDNN custom operations are on.\nEpoch 1/4\n")
    stream.write("W0000 00:00:1.5 7 graph.cc:9] NodeDef mentions attribute use_unbounded_threadpool\n")
    stream.write("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    stream.write("E0000 00:00:1.5 7 loader.cc:3] an error stays\nno newline yet")
    stream.close()
    assert out.text == "Epoch 1/4\nE0000 00:00:1.5 7 loader.cc:3] an error stays\nno newline yet"
    assert NATIVE_LOG_LINE.fullmatch("I0000 00:00:1796689813.546405    6592 port.cc:153] oneDNN custom operations")


class _Written:
    """What a ``_NativeLogFilter`` passes on."""

    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_tensorflows_notices_are_hidden_unless_verbose():
    script = """import contextlib, sys
from training.cli import native_logs_hidden, _quiet
verbose = sys.argv[1] == "verbose"
_quiet(verbose)
with contextlib.nullcontext() if verbose else native_logs_hidden():
    import tensorflow as tf
    tf.constant(1.0) + 1.0
    print("the project's line", file=sys.stderr)
"""
    runs = {mode: subprocess.run([sys.executable, "-c", script, mode], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stderr for mode in ("quiet", "verbose")}
    assert "oneDNN custom operations" in runs["verbose"]  # what TensorFlow prints on import, unfiltered
    assert "the project's line" in runs["quiet"]
    assert "oneDNN" not in runs["quiet"] and "absl::InitializeLog" not in runs["quiet"]


def test_the_cli_is_the_one_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"carclf": "training.cli:main"}
    assert sorted(cli.commands) == sorted(SUBCOMMANDS)
