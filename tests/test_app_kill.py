"""An app command SIGKILLed before any of its renames leaves its output folder holding the previous
complete result or the new complete one, never a mix (``classify --overlay-dir``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiattn.cli import main as cli_main
from tests.helpers.kill_at_rename import fingerprint, kill_at_every_rename

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _digits(tiny_checkpoints, folder: Path, names: list[str], offset: int) -> list[str]:
    images = np.load(tiny_checkpoints["stn"][1] / "RTS" / "test_images.npy")
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.fromarray(images[offset + index]).save(folder / name)
    return [str(folder / name) for name in names]


@pytest.mark.parametrize("earlier", [False, True], ids=["fresh-folder", "over-an-earlier-run"])
def test_classify_killed_at_any_rename_leaves_the_old_or_the_new_overlays(
    tiny_checkpoints, tmp_path, earlier
):
    ckpt = str(tiny_checkpoints["stn"][0])
    out = tmp_path / "ov"
    names = ["a.png", "b.png", "c.png"]
    if earlier:  # an earlier run's overlays under the same names, from other pictures
        first = _digits(tiny_checkpoints, tmp_path / "first", names, 0)
        assert (
            cli_main(["classify", *first, "--ckpt", ckpt, "--overlay-dir", str(out), "--device", "cpu"]) == 0
        )
    old = fingerprint(out)
    assert len(old) == (3 if earlier else 0)
    images = _digits(tiny_checkpoints, tmp_path / "second", names, 3)
    argv = ["classify", *images, "--ckpt", ckpt, "--overlay-dir", str(out), "--overwrite", "--device", "cpu"]
    head, kills, final = kill_at_every_rename(out, argv + ["--json"], tmp_path / "kill.jsonl")
    new = head["new"]
    assert sorted(new) == ["a_stn.png", "b_stn.png", "c_stn.png"] and new != old
    assert len(kills) == head["total"]
    assert all(entry["killed"] for entry in kills)
    for entry in kills:  # each killed run starts from the old folder
        assert entry["state"] in (old, new), f"mixed folder: kill at rename {entry['kill_at']}"
    assert head["total"] == 4  # three overlays written into the staging folder, then one exchange
    assert kills[0]["state"] == old and kills[-1]["state"] == old  # killed before the last step
    assert final["final"] == head["total"] and final["state"] == new
    assert [n for n in final["beside"] if n.startswith(".")] == []  # no staging folder, lock or temp file
