"""The HTML explorer: written atomically, self-contained, and working in a real browser."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multiattn.explorer import write_report
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS


def make_report(out: Path, n_captions: int = 3) -> dict:
    assets = out / "assets"
    assets.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(assets / "img.png")
    Image.fromarray(rng.integers(0, 255, (60, 60), dtype=np.uint8)).save(assets / "digit.png")
    Image.fromarray(rng.integers(0, 255, (40, 300, 3), dtype=np.uint8)).save(assets / "spec.png")
    with wave.open(str(assets / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        t = np.arange(32000) / 16000
        w.writeframes((0.3 * np.sin(2 * math.pi * 440 * t) * 32767).astype(np.int16).tobytes())
    one_hot = lambda k: [1.0 if i == k else 0.0 for i in range(9)]  # noqa: E731
    captions = [
        {
            "file": f"scene_{i}.png",
            "image": "assets/img.png",
            "width": 96,
            "height": 96,
            "words": ["a", "red", "circle"],
            "grid": [3, 3],
            "attention": [one_hot(0), one_hot(4), one_hot(8)],
            "references": ["a red circle", "one red circle"],
            "scores": {"BLEU-4": 0.9},
        }
        for i in range(n_captions)
    ]
    return {
        "title": "test report",
        "sections": [
            {
                "task": "captioning",
                "title": "captioning",
                "checkpoint": "c.ckpt",
                "data": "tiny",
                "metrics": {"BLEU-4": 0.5},
                "items": captions,
            },
            {
                "task": "stn",
                "title": "classifier",
                "checkpoint": "s.ckpt",
                "data": "tiny",
                "metrics": {"accuracy": 1.0},
                "items": [
                    {
                        "file": "d.png",
                        "image": "assets/digit.png",
                        "warped": "assets/digit.png",
                        "width": 60,
                        "height": 60,
                        "corners": [[10, 10], [40, 10], [40, 40], [10, 40]],
                        "label": "3",
                        "probabilities": {"3": 0.9, "5": 0.1},
                        "true_label": "3",
                        "iou": 0.8,
                    }
                ],
            },
            {
                "task": "asr",
                "title": "speech",
                "checkpoint": "a.ckpt",
                "data": "tiny",
                "metrics": {"WER": 0.1},
                "items": [
                    {
                        "file": "a.wav",
                        "audio": "assets/a.wav",
                        "spectrogram": "assets/spec.png",
                        "duration": 2.0,
                        "text": "hello big world",
                        "reference": "hello world",
                        "words": [
                            {"word": "hello", "start": 0.1, "end": 0.5, "status": "ok"},
                            {"word": "big", "start": 0.6, "end": 0.9, "status": "ins"},
                            {"word": "world", "start": 1.2, "end": 1.7, "status": "ok"},
                        ],
                        "deleted": [],
                    }
                ],
            },
        ],
    }


def test_write_report_is_self_contained(tmp_path):
    index = write_report(make_report(tmp_path), tmp_path)
    assert index == tmp_path / "index.html"
    page = index.read_text()
    assert "http://" not in page and "https://" not in page
    for name in ("explorer.js", "explorer.css", "data.js"):
        assert (tmp_path / name).is_file()
        assert "https://" not in (tmp_path / name).read_text()
    data = (tmp_path / "data.js").read_text()
    payload = json.loads(data.removeprefix("window.MULTIATTN_REPORT = ").rstrip().rstrip(";"))
    assert [s["task"] for s in payload["sections"]] == ["captioning", "stn", "asr"]


def test_bad_report_is_refused(tmp_path):
    with pytest.raises(ValueError, match="task must be one of"):
        write_report({"sections": [{"task": "nope", "items": []}]}, tmp_path)
    assert not (tmp_path / "index.html").exists()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it when it can)")
def test_report_in_headless_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    index = write_report(make_report(tmp_path, n_captions=30), tmp_path)
    errors: list[str] = []
    failed: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(index.as_uri())
        page.wait_for_load_state("load")

        # Captioning: pagination (30 items, 24 per page) and a word click that changes the map.
        assert page.locator("[data-testid=page]").inner_text() == "page 1 of 2"
        canvas = page.locator("[data-testid=heat]").first
        blank = canvas.screenshot()
        words = page.locator(".item").first.locator("[data-testid=word]")
        words.nth(0).click()
        first = canvas.screenshot()
        words.nth(2).click()
        last = canvas.screenshot()
        assert canvas.get_attribute("data-word") == "2"
        assert first != blank and last != first

        # Classifier: region polygon and probability bars.
        page.get_by_role("button", name="classifier").click()
        assert page.locator("[data-testid=region]").count() == 1
        assert page.locator("[data-testid=bars] .bar").count() == 2

        # Speech: clicking a word moves the audio position to the word's start.
        page.get_by_role("button", name="speech").click()
        page.locator("[data-testid=word]").nth(2).click()
        position = page.locator("[data-testid=audio]").evaluate("a => a.currentTime")
        assert abs(position - 1.2) < 1e-3
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert not failed, failed
    assert (tmp_path / "report.png").stat().st_size > 1000
