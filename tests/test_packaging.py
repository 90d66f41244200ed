"""Packaged configs (``multiattn configs``, ``-c NAME``), one version source, extras' one-line errors."""

from __future__ import annotations

import builtins
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import multiattn
from multiattn import cli
from multiattn.config_files import config_dir, find_config, packaged_configs, resolve_config_args
from multiattn.extras import EXTRAS, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]


def test_packaged_configs_are_the_repositorys():
    assert config_dir().resolve() == (ROOT / "configs").resolve()
    assert set(packaged_configs()) == {p.stem for p in (ROOT / "configs").glob("*.yaml")}


@pytest.mark.parametrize("value", ["stn_tiny", "stn_tiny.yaml", "configs/stn_tiny.yaml"])
def test_bare_name_resolves_to_the_packaged_config(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packaged = str(packaged_configs()["stn_tiny"])
    assert resolve_config_args(["fit", "-c", value, "--x", "1"]) == ["fit", "-c", packaged, "--x", "1"]
    assert resolve_config_args(["fit", f"--config={value}"]) == ["fit", f"--config={packaged}"]
    assert resolve_config_args(["fit", "--config", value]) == ["fit", "--config", packaged]


def test_existing_files_and_unknown_names_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stn_tiny").write_text("seed_everything: 1\n")  # a user's own file wins
    assert resolve_config_args(["fit", "-c", "stn_tiny"]) == ["fit", "-c", "stn_tiny"]
    for value in ["nope", "other/stn_tiny.yaml", "stn_tiny.json"]:
        assert resolve_config_args(["fit", "-c", value]) == ["fit", "-c", value]
        assert find_config(value) is None
    assert resolve_config_args(["fit", "--trainer.c", "stn"]) == ["fit", "--trainer.c", "stn"]


def test_configs_command_lists_and_prints(capsys):
    assert cli.main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(packaged_configs())
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # every config has a description
    assert cli.main(["configs", "stn"]) == 0
    assert capsys.readouterr().out == (ROOT / "configs" / "stn.yaml").read_text()
    assert cli.main(["configs", "nope"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "'nope'" in err and "stn_tiny" in err
    assert cli.main(["--help"]) == 0
    assert "  configs" in capsys.readouterr().out


def test_one_version_source():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "multiattn.__version__"}
    assert multiattn.__version__.count(".") == 2
    assert project["project"]["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_extras_hold_every_optional_package():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for module, (package, extra) in EXTRAS.items():
        assert any(dep.startswith(package) for dep in project["optional-dependencies"][extra]), module
        assert not any(dep.startswith(package) for dep in project["dependencies"]), module


@pytest.fixture
def without(monkeypatch):
    """Make importing the given top-level modules fail as if they were not installed."""
    hidden: set[str] = set()
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr("importlib.import_module", lambda name: fake_import(name))
    return hidden


def test_missing_extra_is_one_line_naming_it(without):
    without.add("sklearn")
    with pytest.raises(MissingExtraError) as info:
        require("sklearn.datasets", "the embedded handwritten digits")
    message = str(info.value)
    assert "\n" not in message and "scikit-learn" in message and "multiattn[data]" in message
    assert isinstance(info.value, ImportError)


def test_missing_dependency_of_an_installed_extra_is_not_hidden(monkeypatch):
    def broken(name):
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setattr("importlib.import_module", broken)
    with pytest.raises(ModuleNotFoundError) as info:
        require("sklearn.datasets", "the embedded handwritten digits")
    assert not isinstance(info.value, MissingExtraError)


def test_lightning_commands_without_the_eval_extra(without, capsys):
    without.add("jsonargparse")
    assert cli.main(["fit", "-c", "stn_tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "multiattn fit needs jsonargparse" in err and "multiattn[eval]" in err


def test_digit_generator_without_the_data_extra(without):
    from multiattn.tasks.stn.sources import glyphs

    without.add("sklearn")
    with pytest.raises(MissingExtraError, match=r"multiattn\[data\]"):
        glyphs.load_handwritten_digits()


def test_checkpoints_of_moved_classes_still_load(tmp_path, monkeypatch, one_thread):
    from multiattn import checkpoint as checkpoint_module
    from multiattn.lightning_cli import build_cli

    config = tmp_path / "toy.yaml"
    config.write_text(
        f"""
trainer: {{default_root_dir: {tmp_path}, max_epochs: 1, accelerator: cpu, logger: false,
          enable_progress_bar: false, enable_model_summary: false}}
model: {{class_path: tests.helpers.toy.ToyModule}}
data: {{class_path: tests.helpers.toy.ToyDataModule}}
"""
    )
    build_cli(["fit", "-c", str(config)])
    (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
    old = torch.load(ckpt, weights_only=True)
    assert old["hyper_parameters"]["_class_path"] == "tests.helpers.toy.ToyModule"
    old["hyper_parameters"]["_class_path"] = "legacy_toys.toy.ToyModule"  # where it used to live
    old["datamodule_hyper_parameters"] = {"_class_path": "legacy_toys.toy.ToyDataModule"}
    torch.save(old, ckpt)

    monkeypatch.setattr(checkpoint_module, "MOVED_CLASS_PATHS", {"legacy_toys.": "tests.helpers."})
    loaded = checkpoint_module.load_checkpoint(ckpt)
    assert loaded["hyper_parameters"]["_class_path"] == "tests.helpers.toy.ToyModule"
    assert loaded["datamodule_hyper_parameters"]["_class_path"] == "tests.helpers.toy.ToyDataModule"
    build_cli(
        ["validate", "-c", str(config), "--ckpt_path", str(ckpt)]
    )  # the model class from the checkpoint

    monkeypatch.setattr(checkpoint_module, "MOVED_CLASS_PATHS", {})
    with pytest.raises((SystemExit, ImportError)):
        build_cli(["validate", "-c", str(config), "--ckpt_path", str(ckpt)])


def test_tensorboard_logger_without_the_train_extra(monkeypatch, tmp_path, capsys):
    from lightning.fabric.loggers import tensorboard

    from multiattn.lightning_cli import build_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tensorboard, "_TENSORBOARD_AVAILABLE", False)
    monkeypatch.setattr(tensorboard, "_TENSORBOARDX_AVAILABLE", False)
    with pytest.raises(SystemExit) as info:
        build_cli(["-c", "stn"], run=False)
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "TensorBoard logger needs tensorboard" in errors[0], errors
    assert "multiattn[train]" in errors[0]


def test_app_commands_import_without_the_extras():
    # None in sys.modules makes an import fail as if the package were not installed.
    blocked = [module for module in EXTRAS if module != "tensorboard"]  # Lightning probes tensorboard itself
    code = (
        f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
        "import multiattn.tasks.stn.app, multiattn.tasks.captioning.app, multiattn.tasks.asr.app, multiattn.tasks.report, multiattn.cli\n"
        "from multiattn import cli\n"
        "assert cli.main(['classify', '--help']) == 0\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
