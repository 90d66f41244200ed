"""``make demo`` writes only under outputs/; ``make readme-images`` refreshes the README's pictures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import readme_images  # noqa: E402

DEMO_CONFIGS = sorted((ROOT / "configs").glob("*_demo.yaml"))


def _paths(config: dict) -> list[str]:
    trainer = config["trainer"]
    found = [trainer["default_root_dir"], trainer["logger"]["init_args"]["save_dir"]]
    for callback in trainer["callbacks"]:
        args = callback.get("init_args", {})
        found += [args[key] for key in ("dirpath", "output_dir") if key in args]
    return found + [config["data"]["init_args"]["data_dir"]]


def test_there_is_a_demo_config_per_task():
    assert [c.stem for c in DEMO_CONFIGS] == ["asr_demo", "captioning_demo", "stn_demo"]


@pytest.mark.parametrize("config", DEMO_CONFIGS, ids=[c.name for c in DEMO_CONFIGS])
def test_demo_configs_write_only_under_outputs(config):
    for path in _paths(yaml.safe_load(config.read_text())):
        assert Path(path).parts[:2] == ("outputs", "demo"), (config.name, path)


def test_demo_script_leaves_the_repository_alone():
    source = (ROOT / "scripts" / "demo.py").read_text()
    assert "docs" not in source.replace("make readme-images", "").split('"""', 2)[2]


def _fake_demo(root: Path) -> Path:
    demo = root / "demo"
    for task in readme_images.TASKS:
        folder = demo / "overlays" / task
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(b"large" * 10)
        (folder / "b.png").write_bytes(f"small {task}".encode())
    (demo / "index.html").write_text("<html></html>")
    return demo


def test_readme_images_copies_each_tasks_smallest_overlay(tmp_path, monkeypatch):
    demo = _fake_demo(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    (images / "stn_overlay.png").write_bytes(b"old")
    monkeypatch.setattr(readme_images, "screenshot", lambda index, target: False)
    assert readme_images.main(["--demo", str(demo), "--images", str(images)]) == 0
    for task in readme_images.TASKS:
        assert (images / f"{task}_overlay.png").read_bytes() == f"small {task}".encode()
    assert sorted(p.name for p in images.iterdir()) == sorted(f"{t}_overlay.png" for t in readme_images.TASKS)


def test_readme_images_before_the_demo_is_one_line(tmp_path, capsys):
    images = tmp_path / "images"
    assert readme_images.main(["--demo", str(tmp_path / "none"), "--images", str(images)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "make demo" in err and not images.exists()


def test_the_demos_report_command_accepts_the_demo_folder(tmp_path, monkeypatch):
    """The explorer is written into outputs/demo beside the training folders: the report's guard
    against writing over a user's folder must let the demo's own command through."""
    import demo

    from tasks.report import build_parser, check_out_folder

    monkeypatch.chdir(tmp_path)
    for task in demo.TASKS:
        (demo.OUT / task / "checkpoints").mkdir(parents=True)
    (demo.OUT / "logs" / "fit.log").parent.mkdir()
    (demo.OUT / "logs" / "fit.log").write_text("kept")
    args = build_parser().parse_args(demo.report_command(limit=4)[1:])
    assert Path(args.out) == demo.OUT
    assert check_out_folder(Path(args.out), force=args.force) is False  # merged in, the rest kept


def test_readme_images_prefers_an_overlay_whose_answer_is_right(tmp_path, monkeypatch):
    demo = _fake_demo(tmp_path)  # b.png is the smaller overlay of every task
    inputs = demo / "inputs"
    inputs.mkdir()
    (inputs / "u.txt").write_text("a small red circle\nthe red circle is small\n")
    records = {
        "stn": [("x_digit5.png", "label", "3", "b"), ("y_digit7.png", "label", "7", "a")],
        "captioning": [
            ("u.png", "caption", "a small blue circle", "b"),
            ("u.png", "caption", "A small red circle", "a"),
        ],
        "asr": [("missing.wav", "text", "hello", "b"), ("none.wav", "text", "hello", "a")],
    }
    (demo / "predictions").mkdir()
    for task, rows in records.items():
        lines = [
            json.dumps({"file": str(inputs / f), key: answer, "overlay": f"overlays/{task}/{o}.png"})
            for f, key, answer, o in rows
        ]
        (demo / "predictions" / f"{task}.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(readme_images, "screenshot", lambda index, target: False)
    images = tmp_path / "images"
    images.mkdir()
    assert readme_images.main(["--demo", str(demo), "--images", str(images)]) == 0
    assert (images / "stn_overlay.png").read_bytes() == b"large" * 10  # b.png's 3 is wrong
    assert (images / "captioning_overlay.png").read_bytes() == b"large" * 10  # a reference, any case
    assert (images / "asr_overlay.png").read_bytes() == b"small asr"  # no truth: the smallest
