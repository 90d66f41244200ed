"""The wheel: built from this tree, installed into a fresh virtual environment, used from an empty folder.

The fresh environment gets the project only from the wheel (``pip install --no-deps``). Its
dependencies (torch, Lightning, ...) are not downloaded again: a ``.pth`` file makes the running
interpreter's site-packages visible after the environment's own. Python does not process the
``.pth`` files of a folder added that way, so an editable install of the project there stays
inactive, and the test checks that ``multiattn`` is imported from the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# What the wheel may install at the top level of site-packages.
TOP_LEVEL = {"multiattn"}
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "multiattn", "tasks", "configs"]


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(the wheel, the environment's bin folder, an environment for its commands)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", JSONARGPARSE_DEPRECATION_WARNINGS="off", PIP_NO_INDEX="1")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    # Build from a copy, so the clone gets no build/ or egg-info (symlinks copied as links).
    source = tmp / "source"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name, follow_symlinks=False)
    dist = tmp / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)], tmp, env)
    (wheel,) = dist.glob("multiattn-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env
        ).stdout.strip()
    )
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz_test_dependencies.pth").write_text("\n".join(paths) + "\n")
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", str(wheel)], tmp, env)
    return wheel, venv / "bin", env


@pytest.mark.slow
def test_wheel_contents_and_metadata(installed):
    wheel, _, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top <= TOP_LEVEL, top
    assert "multiattn/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    shipped = {Path(n).name for n in names if n.startswith("multiattn/configs/")}
    assert shipped == {p.name for p in (ROOT / "configs").glob("*.yaml")}
    assert "License-Expression: MIT" in metadata
    import multiattn

    assert f"Version: {multiattn.__version__}\n" in metadata
    # Inference needs none of the extras' packages.
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    base = [line for line in requires if "extra ==" not in line]
    for package in ("scikit-learn", "pycocoevalcap", "espeakng-loader", "tensorboard", "jsonargparse"):
        assert not any(package in line for line in base), package
        assert any(package in line for line in requires), package


@pytest.mark.slow
def test_wheel_trains_and_classifies_from_an_empty_folder(installed, tmp_path):
    _, bin_dir, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    multiattn = str(bin_dir / "multiattn")
    where = _run([str(bin_dir / "python"), "-c", "import multiattn; print(multiattn.__file__)"], work, env)
    assert Path(where.stdout.strip()).is_relative_to(bin_dir.parent), where.stdout

    listed = _run([multiattn, "configs"], work, env).stdout
    assert {line.split()[0] for line in listed.splitlines()} >= {"stn", "stn_tiny", "captioning", "asr"}

    _run([multiattn, "fit", "-c", "stn_tiny", "--trainer.max_epochs", "1"], work, env)
    ckpt = work / "outputs" / "stn_tiny" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    image = np.zeros((42, 42), dtype=np.uint8)
    image[10:32, 19:23] = 255  # a "1"
    Image.fromarray(image).save(work / "digit.png")
    result = _run([multiattn, "classify", "digit.png", "--ckpt", str(ckpt), "--json"], work, env)
    record = json.loads(result.stdout.splitlines()[0])
    assert record["file"] == "digit.png" and record["label"] in [str(d) for d in range(10)]
    assert sorted(p.name for p in work.iterdir()) == ["data", "digit.png", "outputs"]
