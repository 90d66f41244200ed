"""``multiattn.datacache``: a cache deletes only what its manifest lists and notices damage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from multiattn.datacache import MANIFEST_NAME, cached_generate, manifest_is_valid
from multiattn.io import UserError
from tests.helpers.processes import run_cli


def _generator(calls: list):
    def generate(root: Path) -> dict:
        calls.append(root)
        (root / "a.bin").write_bytes(b"a" * 1000)
        (root / "sub").mkdir()
        (root / "sub" / "b.bin").write_bytes(b"b" * 10)
        return {"count": 2}

    return generate


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "layout",
    [
        {"thesis.txt": b"draft", "photos/cat.jpg": b"\xff\xd8"},  # the user's own folder
        {"notes.md": b"# mine"},
    ],
)
def test_a_folder_without_manifest_is_refused_and_left_untouched(tmp_path, layout):
    root = tmp_path / "u"
    for rel, data in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    calls: list = []
    with pytest.raises(UserError) as info:
        cached_generate(root, {"seed": 1}, _generator(calls))
    assert str(root) in str(info.value) and "\n" not in str(info.value)
    assert _tree(root) == layout and not calls
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u"]  # no staging folder left beside


def test_a_foreign_manifest_is_refused(tmp_path):
    root = tmp_path / "u"
    root.mkdir()
    (root / MANIFEST_NAME).write_text(json.dumps({"name": "my package"}))
    (root / "x.txt").write_text("mine")
    with pytest.raises(UserError, match="not a multiattn data cache manifest"):
        cached_generate(root, {"seed": 1}, _generator([]))
    assert (root / "x.txt").read_text() == "mine"


def test_a_file_or_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(UserError, match="is a file"):
        cached_generate(tmp_path / "f", {"seed": 1}, _generator([]))
    with pytest.raises(UserError, match="cannot write here") as info:
        cached_generate(tmp_path / "f" / "cache", {"seed": 1}, _generator([]))  # parent is a file
    assert "\n" not in str(info.value)
    assert (tmp_path / "f").read_text() == "mine"


def test_new_and_empty_folders_are_generated_into(tmp_path):
    calls: list = []
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "new" / "deep", tmp_path / "empty"):
        manifest = cached_generate(root, {"seed": 1}, _generator(calls))
        assert manifest["files"] == {"a.bin": 1000, "sub/b.bin": 10} and manifest["count"] == 2
        assert set(manifest["checksums"]) == set(manifest["files"])
        assert _tree(root).keys() == {"a.bin", "sub/b.bin", MANIFEST_NAME}
    assert cached_generate(tmp_path / "empty", {"seed": 1}, _generator(calls))["count"] == 2
    assert len(calls) == 2  # the second call was served from the cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]


def test_regeneration_keeps_files_the_manifest_does_not_list(tmp_path):
    root = tmp_path / "c"
    calls: list = []
    cached_generate(root, {"seed": 1}, _generator(calls))
    (root / "mine.txt").write_text("keep me")
    (root / "sub" / "mine.txt").write_text("keep me too")

    def smaller(folder: Path) -> dict:
        (folder / "c.bin").write_bytes(b"c")
        return {}

    manifest = cached_generate(root, {"seed": 2}, smaller)  # other parameters: regenerate
    assert manifest["files"] == {"c.bin": 1}
    assert _tree(root).keys() == {"c.bin", "mine.txt", "sub/mine.txt", MANIFEST_NAME}


def test_a_manifest_never_reaches_outside_its_folder(tmp_path):
    root = tmp_path / "c"
    cached_generate(root, {"seed": 1}, _generator([]))
    (tmp_path / "outside.txt").write_text("mine")
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    manifest["files"]["../outside.txt"] = 4
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    cached_generate(root, {"seed": 2}, _generator([]))
    assert (tmp_path / "outside.txt").read_text() == "mine"


@pytest.mark.parametrize("where", [0, 500, 999])
def test_damage_that_keeps_the_size_is_noticed(tmp_path, where):
    root = tmp_path / "c"
    calls: list = []
    cached_generate(root, {"seed": 1}, _generator(calls))
    with open(root / "a.bin", "r+b") as handle:
        handle.seek(where)
        handle.write(b"Z")
    assert (root / "a.bin").stat().st_size == 1000
    assert not manifest_is_valid(root, {"seed": 1})
    cached_generate(root, {"seed": 1}, _generator(calls))
    assert len(calls) == 2 and (root / "a.bin").read_bytes() == b"a" * 1000


def test_damaged_manifest_is_regenerated(tmp_path):
    root = tmp_path / "c"
    calls: list = []
    cached_generate(root, {"seed": 1}, _generator(calls))
    (root / MANIFEST_NAME).write_text("{not json")
    cached_generate(root, {"seed": 1}, _generator(calls))
    assert len(calls) == 2 and manifest_is_valid(root, {"seed": 1})


def test_a_failed_generation_leaves_the_old_cache_and_nothing_beside(tmp_path):
    root = tmp_path / "c"
    cached_generate(root, {"seed": 1}, _generator([]))
    before = _tree(root)

    def broken(folder: Path) -> dict:
        (folder / "a.bin").write_bytes(b"half")
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        cached_generate(root, {"seed": 2}, broken)
    assert _tree(root) == before and manifest_is_valid(root, {"seed": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_a_killed_generation_is_cleaned_by_the_next_run(tmp_path):
    root = tmp_path / "c"
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from multiattn.datacache import cached_generate
        def generate(folder):
            (folder / "a.bin").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        cached_generate(Path({str(root)!r}), {{"seed": 1}}, generate)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    assert not root.exists() and any(tmp_path.iterdir())  # only the hidden staging folder
    cached_generate(root, {"seed": 1}, _generator([]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_a_damaged_scene_cache_is_regenerated_not_a_numpy_error(tmp_path):
    from multiattn.tasks.captioning.sources.scenes import generate_scenes, load_scene_split

    sizes = {"image_size": 96, "num_train": 3, "num_val": 2, "num_test": 2}
    generate_scenes(tmp_path / "scenes", **sizes)
    good, _ = load_scene_split(tmp_path / "scenes", "train")
    good = np.array(good)
    path = tmp_path / "scenes" / "train_images.npy"
    data = bytearray(path.read_bytes())
    data[:64] = b"\x00" * 64  # the .npy header: numpy would raise ValueError on open
    path.write_bytes(bytes(data))
    generate_scenes(tmp_path / "scenes", **sizes)
    again, _ = load_scene_split(tmp_path / "scenes", "train")
    np.testing.assert_array_equal(np.array(again), good)


def test_fit_with_a_users_folder_as_data_dir_is_one_line_and_deletes_nothing(tmp_path):
    root = Path(__file__).resolve().parents[2]
    user = tmp_path / "u"
    (user / "photos").mkdir(parents=True)
    (user / "thesis.txt").write_text("draft")
    (user / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    config = str(root / "configs" / "captioning_tiny.yaml")
    result = run_cli(
        "fit", "-c", config, "--trainer.max_epochs", "1", "--data.init_args.data_dir", str(user), cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if str(user) in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert _tree(user) == {"photos/cat.jpg": b"\xff\xd8", "thesis.txt": b"draft"}
