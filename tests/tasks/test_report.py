"""``multiattn report`` end to end: tiny checkpoints of the three tasks -> one explorer -> a real browser.

The module fixture trains the three tiny configs (one epoch each, in parallel subprocesses, all
paths under a temporary folder), so the whole file takes about a minute on two idle cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from multiattn.tasks.report import main as report_main
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS
from tests.helpers.kill_at_rename import kill_at_every_rename

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("captioning", "stn", "asr")


def _tiny_config(task: str, work: Path) -> Path:
    """configs/<task>_tiny.yaml with every output and data path moved under ``work``."""
    text = (ROOT / "configs" / f"{task}_tiny.yaml").read_text()
    text = text.replace(f"outputs/{task}_tiny", str(work / task)).replace(
        f"data/{task}_tiny", str(work / "data" / task)
    )
    path = work / f"{task}_tiny.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("report_ckpts")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JSONARGPARSE_DEPRECATION_WARNINGS": "off"}
    runs = {}
    for task in TASKS:
        command = [sys.executable, "-m", "multiattn.cli", "fit", "-c", str(_tiny_config(task, work))]
        # The captioner needs a few more steps than one tiny epoch before its per-word maps differ.
        epochs = "4" if task == "captioning" else "1"
        command += ["--trainer.max_epochs", epochs, "--model.log_overlays", "false"]
        log = open(work / f"{task}.log", "w")
        runs[task] = (subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    for task, (process, log) in runs.items():
        process.wait(timeout=600)
        log.close()
        assert process.returncode == 0, (work / f"{task}.log").read_text()[-3000:]
    found = {task: work / task / "checkpoints" / "last.ckpt" for task in TASKS}
    assert all(path.is_file() for path in found.values())
    return found


@pytest.fixture(scope="module")
def report(checkpoints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    argv = [f"--ckpt={checkpoints[t]}" for t in TASKS] + [
        "--split",
        "test",
        "--limit",
        "3",
        "--out",
        str(out),
    ]
    assert report_main(argv + ["--device", "cpu", "--batch-size", "2"]) == 0
    return out


def _payload(out: Path) -> dict:
    text = (out / "data.js").read_text(encoding="utf-8")
    return json.loads(text.removeprefix("window.MULTIATTN_REPORT = ").rstrip().rstrip(";"))


def test_split_report_files_and_fields(report):
    for name in ("index.html", "data.js", "explorer.js", "explorer.css"):
        assert (report / name).is_file()
    payload = _payload(report)
    sections = {s["task"]: s for s in payload["sections"]}
    assert [s["task"] for s in payload["sections"]] == list(TASKS)
    for section in sections.values():
        assert len(section["items"]) == 3 and section["checkpoint"].endswith("last.ckpt")
        for item in section["items"]:
            for key in ("image", "warped", "audio", "spectrogram"):
                if key in item:
                    assert (report / item[key]).is_file() and (report / item[key]).stat().st_size > 100
    caption = sections["captioning"]
    assert {"BLEU-1", "BLEU-4", "CIDEr-D", "ROUGE-L"} <= set(caption["metrics"])
    for item in caption["items"]:
        h, w = item["grid"]
        assert len(item["attention"]) == len(item["words"]) and all(
            len(r) == h * w for r in item["attention"]
        )
        assert item["references"] and "BLEU-4" in item["scores"]
    stn = sections["stn"]
    assert {"accuracy", "mean IoU", "IoU>0.5"} <= set(stn["metrics"])
    for item in stn["items"]:
        assert (
            len(item["corners"]) == 4
            and item["true_label"] in item["probabilities"]
            and 0 <= item["iou"] <= 1
        )
        assert abs(sum(item["probabilities"].values()) - 1) < 1e-2
        with Image.open(report / item["image"]) as img:
            assert img.size == (item["width"], item["height"])
    speech = sections["asr"]
    assert {"WER", "CER"} <= set(speech["metrics"])
    for item in speech["items"]:
        assert item["reference"] and item["audio"].endswith(".wav") and "WER" in item["scores"]
        assert all(w["status"] in ("ok", "sub", "ins") and 0 <= w["start"] <= w["end"] for w in item["words"])
        # Every reference word is accounted for: matched / substituted by a hypothesis word, or deleted.
        kept = sum(w["status"] in ("ok", "sub") for w in item["words"])
        assert kept + len(item["deleted"]) == len(item["reference"].split())


def test_word_statuses_from_the_alignment():
    from multiattn.tasks.asr.report import word_statuses

    statuses, deleted = word_statuses("the cat sat on the mat", ["a", "cat", "sat", "sat", "the", "mat"])
    assert statuses == ["sub", "ok", "ok", "sub", "ok", "ok"] and deleted == []
    statuses, deleted = word_statuses("the cat sat", ["cat", "sat", "down"])
    assert statuses == ["ok", "ok", "ins"] and deleted == ["the"]


def test_inputs_mode_skips_unreadable_files(checkpoints, tmp_path, capsys):
    rng = np.random.default_rng(0)
    good = []
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(tmp_path / name)
        good.append(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    argv = ["--ckpt", str(checkpoints["stn"]), "--inputs", *map(str, good), str(tmp_path / "broken.png")]
    code = report_main(argv + ["--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    bad = [line for line in err.splitlines() if "broken.png" in line]
    assert len(bad) == 1 and bad[0].startswith(f"multiattn report: {tmp_path / 'broken.png'}: ")
    section = _payload(out)["sections"][0]
    assert [item["file"] for item in section["items"]] == list(map(str, good))
    # The same corners as `multiattn classify` gives in the file's pixels, mapped onto the shown
    # image (70x50 enlarged x3, pixel centres at integers).
    from multiattn.tasks.stn.app import main as classify_main

    assert (
        classify_main([*map(str, good), "--ckpt", str(checkpoints["stn"]), "--json", "--device", "cpu"]) == 0
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for item, record in zip(section["items"], records, strict=True):
        assert (item["width"], item["height"]) == (210, 150)
        expected = (np.asarray(record["corners"]) + 0.5) * 3 - 0.5
        np.testing.assert_allclose(item["corners"], expected, atol=0.02)
        assert item["label"] == record["label"]


def test_user_errors_are_one_line(checkpoints, tmp_path, capsys):
    bogus = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "somewhere.Else"}}, bogus)
    assert report_main(["--ckpt", str(bogus), "--split", "test", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not of a multiattn task" in err
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    assert (
        report_main(["--ckpt", str(tmp_path / "junk.ckpt"), "--split", "test", "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "junk.ckpt" in err
    argv = [
        "--ckpt",
        str(checkpoints["asr"]),
        "--inputs",
        str(tmp_path / "missing.wav"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert report_main(argv) == 2  # nothing readable: nothing to report
    assert "nothing to report" in capsys.readouterr().err


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it when it can)")
def test_report_in_headless_chromium(report, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    payload = _payload(report)
    captions = payload["sections"][0]["items"]
    # The caption and the two words whose (max-normalised, as drawn) maps differ most.
    best = (-1.0, 0, 0, 0)
    for n, item in enumerate(captions):
        maps = [np.asarray(r) / max(max(r), 1e-12) for r in item["attention"]]
        for i in range(len(maps)):
            for j in range(i + 1, len(maps)):
                best = max(best, (float(np.abs(maps[i] - maps[j]).max()), n, i, j))
    assert best[0] > 0.005, "the tiny captioner's maps are all alike: nothing to see change"
    _, n, i, j = best
    speech = payload["sections"][2]["items"]
    errors: list[str] = []
    failed: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # A media element's open range request is aborted (net::ERR_ABORTED) when it seeks or when
        # the browser closes; that is not a missing asset, which fails as ERR_FILE_NOT_FOUND.
        page.on(
            "requestfailed",
            lambda r: None if "ERR_ABORTED" in (r.failure or "") else failed.append(f"{r.url}: {r.failure}"),
        )
        page.goto((report / "index.html").as_uri())
        page.wait_for_load_state("load")

        item = page.locator(".item").nth(n)
        canvas = item.locator("[data-testid=heat]")
        words = item.locator("[data-testid=word]")
        blank = canvas.screenshot()
        words.nth(i).click()
        first = canvas.screenshot()
        words.nth(j).click()
        second = canvas.screenshot()
        assert canvas.get_attribute("data-word") == str(j)
        assert first != blank and second != first

        page.get_by_role("button", name="classifier").click()
        assert page.locator("[data-testid=region]").count() == 3
        assert page.locator("[data-testid=bars]").count() == 3

        page.get_by_role("button", name="speech").click()
        k, w = max(
            ((k, w) for k, it in enumerate(speech) for w in range(len(it["words"]))),
            key=lambda kw: speech[kw[0]]["words"][kw[1]]["start"],
        )
        start = speech[k]["words"][w]["start"]
        assert start > 0.01
        player = page.locator(".item").nth(k).locator("[data-testid=audio]")
        page.locator(".item").nth(k).locator("[data-testid=word]").nth(w).click()
        position = player.evaluate("a => a.currentTime")
        assert abs(position - start) < 1e-3
        # Every clip in the report really decodes: its metadata loads and its duration is right.
        players = page.locator("[data-testid=audio]")
        for m in range(players.count()):
            players.nth(m).evaluate(
                "a => a.readyState >= 1 || a.error || new Promise(done => {"
                " a.addEventListener('loadedmetadata', done, {once: true});"
                " a.addEventListener('error', done, {once: true}); })"
            )
            duration = players.nth(m).evaluate("a => a.duration")
            assert duration > max((w["start"] for w in speech[m]["words"]), default=0.0), (m, duration)
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert not failed, failed
    assert (tmp_path / "report.png").stat().st_size > 1000


# ---- --out safety: nothing the user has is overwritten, a report is replaced whole or not at all ----
def _fingerprint(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _stn_inputs(tmp_path: Path, names=("a.png",)) -> list[str]:
    rng = np.random.default_rng(len(names))
    for name in names:
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / name)
    return [str(tmp_path / name) for name in names]


def test_out_that_is_not_a_report_is_refused_unless_force(checkpoints, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "index.html").write_text("my own page")
    (out / "notes.txt").write_text("keep")
    argv = [
        "--ckpt",
        str(checkpoints["stn"]),
        "--inputs",
        *_stn_inputs(tmp_path),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert report_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--force" in err
    assert _fingerprint(out) == {"index.html": b"my own page", "notes.txt": b"keep"}
    assert report_main(argv + ["--force"]) == 0
    assert (out / "notes.txt").read_text() == "keep" and "MULTIATTN" in (out / "data.js").read_text()[:40]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "mine"]  # no staging folder left


def test_failed_rerun_keeps_the_previous_report_whole(checkpoints, tmp_path, capsys):
    out = tmp_path / "report"
    base = ["--ckpt", str(checkpoints["stn"]), "--out", str(out), "--device", "cpu"]
    assert report_main(base + ["--inputs", *_stn_inputs(tmp_path)]) == 0
    before = _fingerprint(out)
    assert any(name.startswith("assets/s0-stn/") for name in before)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert report_main(base + ["--inputs", str(tmp_path / "broken.png")]) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert _fingerprint(out) == before
    # A successful rerun replaces the report whole: none of the old assets linger beside the new.
    assert report_main(base + ["--inputs", *_stn_inputs(tmp_path, ("b.png", "c.png"))]) == 0
    after = _fingerprint(out)
    items = _payload(out)["sections"][0]["items"]
    referenced = {item[key] for item in items for key in ("image", "warped")}
    assert {n for n in after if n.startswith("assets/")} == referenced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "broken.png", "c.png", "report"]


def test_unwritable_out_is_one_line(checkpoints, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    argv = ["--ckpt", str(checkpoints["stn"]), "--inputs", *_stn_inputs(tmp_path), "--device", "cpu"]
    for out in (tmp_path / "file", tmp_path / "file" / "report"):
        assert report_main(argv + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(out) in err
    assert (tmp_path / "file").read_text() == "mine"


def test_report_killed_at_any_write_leaves_the_old_or_the_new_report(checkpoints, tmp_path):
    out = tmp_path / "report"
    first = _stn_inputs(tmp_path, ("first.png",))
    assert (
        report_main(
            ["--ckpt", str(checkpoints["stn"]), "--inputs", *first, "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    old = {k: v.hex() for k, v in _fingerprint(out).items()}
    second = _stn_inputs(tmp_path, ("second.png",))[0]
    argv = [
        "report",
        "--ckpt",
        str(checkpoints["stn"]),
        "--inputs",
        second,
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    head, kills, final = kill_at_every_rename(out, argv, tmp_path / "kill.jsonl")
    new = head["new"]

    def is_new(state: dict) -> bool:  # data.js differs only by its creation time
        same = all(state[k] == new[k] for k in new if k != "data.js")
        return state.keys() == new.keys() and same and "MULTIATTN" in bytes.fromhex(state["data.js"]).decode()

    assert new != old and head["total"] >= 5 and len(kills) == head["total"]
    assert all(entry["killed"] for entry in kills)
    for entry in kills:  # each killed run starts from the old report
        assert entry["state"] == old or is_new(entry["state"]), (
            f"mixed report: kill at rename {entry['kill_at']}"
        )
    assert any(entry["state"] == old for entry in kills) and any(is_new(entry["state"]) for entry in kills)
    assert final["final"] == head["total"] and is_new(final["state"])
    assert [n for n in final["beside"] if n.startswith(".report.")] == []


def test_every_section_counts_its_examples_on_a_terminal_progress_bar(checkpoints, tmp_path, monkeypatch):
    import io

    from multiattn import apps

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bars = []
    real = apps.progress
    monkeypatch.setattr(apps, "progress", lambda *a, **k: bars.append(real(*a, **k)) or bars[-1])
    stream = Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    argv = [f"--ckpt={checkpoints[t]}" for t in TASKS] + ["--device", "cpu", "--batch-size", "2"]
    assert report_main(argv + ["--split", "test", "--limit", "3", "--out", str(tmp_path / "split")]) == 0
    assert [(bar.n, bar.total) for bar in bars] == [(3, 3)] * len(TASKS)  # batches of 2 and 1
    for index, task in enumerate(TASKS):
        assert f"{task} {index + 1}/{len(TASKS)}" in stream.getvalue()
    assert "example/s" in stream.getvalue() and "file/s" not in stream.getvalue()
    bars.clear()
    stn = ["--ckpt", str(checkpoints["stn"]), "--device", "cpu", "--out", str(tmp_path / "inputs")]
    assert report_main(stn + ["--inputs", *_stn_inputs(tmp_path, ("a.png", "b.png", "c.png"))]) == 0
    assert [(bar.n, bar.total) for bar in bars] == [(3, 3)]
    monkeypatch.setattr("sys.stderr", stream := Terminal())
    assert report_main(stn + ["--inputs", *_stn_inputs(tmp_path), "--quiet"]) == 0
    assert "stn 1/1" not in stream.getvalue()
