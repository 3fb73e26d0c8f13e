"""The commands: carclf (training.cli, tested in test_cli) and the benchmarks, each a `python -m` module
that answers --help; no module imports a command module; benchmarks.training_throughput runs to its table
on a tiny synthetic dataset."""

import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import synthetic_dataset
from training.config import Stage, TrainConfig

# A benchmark is a module that runs as `python -m benchmarks.MODULE`.
BENCHMARKS = sorted(
    f"benchmarks.{path.stem}"
    for path in (ROOT / "benchmarks").glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()
)
COMMANDS = ["training.cli", *BENCHMARKS]


def test_the_commands_are_found():
    assert {"benchmarks.bare_model", "benchmarks.training_throughput"} <= set(BENCHMARKS)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_module_imports_a_command():
    # Commands are thin main()s over library modules: shared code lives in the library.
    offenders = {
        f"{path.relative_to(ROOT)} imports {sorted(imported_modules(path) & set(COMMANDS))}"
        for folder in ("app", "inference", "training", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if imported_modules(path) & set(COMMANDS)
    }
    assert not offenders


@pytest.mark.parametrize("module", BENCHMARKS)
def test_every_benchmark_answers_help(module, capsys):
    with pytest.raises(SystemExit) as caught:
        importlib.import_module(module).main(["--help"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {module}")


def test_training_throughput_runs_one_tiny_step(tmp_path, capsys):
    from benchmarks import training_throughput

    data = synthetic_dataset(tmp_path / "data")
    config = TrainConfig(backbone="MobileNetV2", alpha=0.35, weights="none", image_size=32, batch_size=4,
                         val_fraction=0.5, stages=[Stage("head", 1, 1e-3, 0.0)])
    config.save(tmp_path / "config.json")
    training_throughput.main(["--config", str(tmp_path / "config.json"), "--epochs", "1", "--data", str(data)])
    out = capsys.readouterr().out
    assert "4 training photos, MobileNetV2 alpha 0.35 at 32px, batch 4" in out
    assert "stage 'head'" in out and "model alone (images in memory)" in out


@pytest.mark.parametrize("module", COMMANDS)
def test_no_command_imports_another_command(module):
    tree = ast.parse((ROOT / Path(*module.split("."))).with_suffix(".py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for alias in node.names}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not (imported & set(COMMANDS)) - {module}
