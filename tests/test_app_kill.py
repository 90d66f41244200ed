"""An app command SIGKILLed before any of its renames leaves its output folder holding the previous
complete result or the new complete one, never a mix (``classify --overlay-dir``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiattn.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
ROOT = Path(__file__).resolve().parents[1]

_KILL_SCRIPT = """
import json, os, shutil, signal, sys
from pathlib import Path
import multiattn.io as io
from multiattn.cli import main

ckpt, out, log, *images = sys.argv[1:]
argv = ["classify", *images, "--ckpt", ckpt, "--overlay-dir", out, "--overwrite", "--device", "cpu", "--json"]


def fingerprint():
    folder = Path(out)
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes().hex() for p in sorted(folder.rglob("*"))}


calls = [0]
kill_at = [0]


def counted(function):
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at[0]:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return wrapper


# Every overlay and the final swap (or moves) go through one of these: a run is killed just before
# its n-th call, for every n.
os.replace, os.rename, io._exchange = counted(os.replace), counted(os.rename), counted(io._exchange)


def run(at):
    # In this process (also warms the lazy imports), or in a forked child killed at its at-th call.
    calls[0], kill_at[0] = 0, at
    if at == 0:
        assert main(argv) == 0
        return calls[0]
    pid = os.fork()
    if pid == 0:
        code = main(argv)
        os._exit(0 if code == 0 else 1)
    status = os.waitpid(pid, 0)[1]
    kill_at[0] = 0
    return status


sys.stdout = sys.stderr = open(os.devnull, "w")
backup = out + ".backup"
if os.path.isdir(out):
    shutil.copytree(out, backup)


def restore():
    shutil.rmtree(out, ignore_errors=True)
    if os.path.isdir(backup):
        shutil.copytree(backup, out)


with open(log, "w") as handle:
    total = run(0)  # an uninterrupted run: how many renames it makes
    handle.write(json.dumps({"total": total, "new": fingerprint()}) + "\\n")
    for n in range(1, total + 1):
        restore()
        status = run(n)
        handle.write(json.dumps({"kill_at": n, "killed": os.WIFSIGNALED(status), "state": fingerprint()}) + "\\n")
    final = run(0)  # a run after the killed ones removes the staging folders they left
    handle.write(json.dumps({"final": final, "state": fingerprint(),
                             "beside": sorted(p.name for p in Path(out).parent.iterdir())}) + "\\n")
"""


def _digits(tiny_checkpoints, folder: Path, names: list[str], offset: int) -> list[str]:
    images = np.load(tiny_checkpoints["stn"][1] / "RTS" / "test_images.npy")
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.fromarray(images[offset + index]).save(folder / name)
    return [str(folder / name) for name in names]


def _fingerprint(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes().hex() for p in sorted(folder.rglob("*"))}


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
    old = _fingerprint(out)
    assert len(old) == (3 if earlier else 0)
    images = _digits(tiny_checkpoints, tmp_path / "second", names, 3)
    script = tmp_path / "kill.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "kill.jsonl"
    run = subprocess.run(
        [sys.executable, str(script), ckpt, str(out), str(log), *images],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    head, kills, final = lines[0], lines[1:-1], lines[-1]
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
