"""The task registry: the built-in tasks' declarations, and a fourth task added with no file edited.

The toy task (``tests/helpers/toytask``) is registered as any installed plugin would be: the test
writes a distribution's metadata (``*.dist-info/entry_points.txt``) into a folder and puts that
folder on ``sys.path``; ``importlib.metadata`` finds it like any installed package.
"""

from __future__ import annotations

import io
import json
from importlib import metadata
from pathlib import Path

import pytest
import torch

import multiattn
from multiattn import cli, registry
from multiattn.explorer import write_report
from multiattn.pipeline import Pipeline
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.toytask import TASK as TALLY
from tests.helpers.toytask import TallySystem

BUILT_IN = {"captioning": "caption", "stn": "classify", "asr": "transcribe"}


@pytest.fixture
def tally_installed(tmp_path, monkeypatch) -> None:
    """A distribution ``multiattn-tally`` whose one ``multiattn.apps`` entry point is the toy task."""
    site = tmp_path / "site"
    info = site / "multiattn_tally-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: multiattn-tally\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\ntally = tests.helpers.toytask:TASK\n"
    )
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def texts(tmp_path) -> list[Path]:
    (tmp_path / "texts").mkdir()
    files = [tmp_path / "texts" / "a.txt", tmp_path / "texts" / "b.txt"]
    files[0].write_text("one two three\n")
    files[1].write_text("four five\n")
    return files


def tally_checkpoint(path: Path) -> Path:
    class_path = f"{TallySystem.__module__}.{TallySystem.__name__}"
    torch.save({"hyper_parameters": {"_class_path": class_path}, "state_dict": {}}, path)
    return path


def test_built_in_tasks_declare_every_piece():
    tasks, commands = registry.load_registry()
    assert set(BUILT_IN) <= set(tasks)
    for name, command in BUILT_IN.items():
        task = tasks[name]
        assert commands[command].help == task.help and task.help
        assert callable(task.load("app")) and callable(task.load("report"))
        assert isinstance(task.load("system"), type)
        assert issubclass(task.load("pipeline"), Pipeline) and task.load("pipeline").task == name
        assert task.owns(f"{task.load('system').__module__}.{task.load('system').__name__}")
        assert task.extensions() and all(e.startswith(".") and e == e.lower() for e in task.extensions())
        assert f"MULTIATTN_RENDERERS || {{}}).{name} = " in task.renderer_source()
    assert "report" in commands and "tally" not in commands


def test_toy_task_appears_in_help(tally_installed, capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert f"  tally       {TALLY.help}" in out
    assert registry.tasks()["tally"] == TALLY


def test_toy_task_gets_its_app_command(tally_installed, texts, tmp_path, capsys):
    ckpt = tally_checkpoint(tmp_path / "tally.ckpt")
    assert cli.main(["tally", str(texts[0]), str(tmp_path / "missing.txt"), "--ckpt", str(ckpt)]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"{texts[0]}\t3 words\n"
    assert "missing.txt" in captured.err
    pipe = multiattn.load(ckpt, device="cpu")  # found through the checkpoint's class path
    assert pipe.task == "tally" and pipe(texts[1]).to_dict() == {"file": str(texts[1]), "words": 2}


def test_toy_task_gets_a_report_section(tally_installed, texts, tmp_path, capsys):
    ckpt = tally_checkpoint(tmp_path / "tally.ckpt")
    out = tmp_path / "report"
    argv = ["report", "--ckpt", str(ckpt), "--inputs", str(texts[0].parent), "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    data = (out / "data.js").read_text()
    payload = json.loads(data.removeprefix("window.MULTIATTN_REPORT = ").rstrip().rstrip(";"))
    (section,) = payload["sections"]
    assert section["task"] == "tally" and section["title"] == "word tally"
    assert section["metrics"] == {"words": 5}
    assert sorted(item["words"] for item in section["items"]) == [2, 3]
    assert '<script src="render-tally.js"></script>' in (out / "index.html").read_text()
    assert (out / "render-tally.js").read_text() == TALLY.renderer_source()
    assert cli.main(argv) == 0  # a folder holding a report with task renderers is a report: replaced
    if CHROMIUM is None:
        return
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto((out / "index.html").as_uri())
        page.wait_for_load_state("load")
        shown = sorted(page.locator("[data-testid=tally]").all_inner_texts())
        browser.close()
    assert shown == ["2 words", "3 words"]


def test_report_refuses_a_section_of_no_registered_task(tmp_path):
    with pytest.raises(ValueError, match="registered tasks"):
        write_report({"sections": [{"task": "tally", "items": []}]}, tmp_path)


def test_missing_task_module_says_not_available(monkeypatch, capsys):
    missing = metadata.EntryPoint(
        name="caption", value="multiattn.tasks.no_such_task.task:TASK", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(registry, "registered_entry_points", lambda: [missing])
    assert cli.main(["--help"]) == 0
    assert "not available" in capsys.readouterr().out
    assert cli.main(["caption", "x.png", "--ckpt", "c.ckpt"]) == 2
    err = capsys.readouterr().err
    assert "not available yet" in err and "multiattn.tasks.no_such_task.task" in err


def test_task_names_are_checked():
    with pytest.raises(ValueError, match="task name"):
        registry.Task(**{**TALLY.__dict__, "name": "Two Words"})


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_toy_task_report_shows_a_progress_bar_only_on_a_terminal(
    tally_installed, texts, tmp_path, monkeypatch, capsys
):
    from multiattn import apps

    ckpt = tally_checkpoint(tmp_path / "tally.ckpt")
    bars = []

    def recording(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        return bars[-1]

    real = apps.progress
    monkeypatch.setattr(apps, "progress", recording)
    for run, (stream, extra, shown) in enumerate(
        ((_Terminal(), [], True), (_Terminal(), ["--quiet"], False), (io.StringIO(), [], False))
    ):
        monkeypatch.setattr("sys.stderr", stream)
        out = tmp_path / f"report{run}"
        argv = ["report", "--ckpt", str(ckpt), "--inputs", *map(str, texts), "--out", str(out), *extra]
        assert cli.main(argv) == 0
        assert ("tally 1/1" in stream.getvalue()) == shown, (extra, shown)
        assert bars[-1].total == len(texts)
        if shown:  # a bar that is off counts nothing
            assert bars[-1].n == len(texts)
