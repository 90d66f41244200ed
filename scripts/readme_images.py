"""``make readme-images``: refresh the README's pictures (``docs/images/``) from ``make demo``'s outputs.

    python scripts/readme_images.py [--demo outputs/demo]

- ``docs/images/<task>_overlay.png``: the smallest overlay the demo's app commands wrote for each
  task (``outputs/demo/overlays/<task>/``) among those whose answer is right (the digit in the
  file's name, the transcript or a reference caption in the ``.txt`` beside it), any when none is;
- ``docs/images/report.png``: a headless Chromium screenshot of the demo's attention explorer
  (``outputs/demo/index.html``) with one caption word selected; skipped, with a message, when
  Chromium or Playwright is missing (``make browser`` installs Chromium).

This is the only command that writes into the repository's ``docs/``: ``make demo`` itself writes
only under ``outputs/``. Each picture is written atomically (a failed screenshot leaves the old one).
Exit status 2, with one line, when the demo has not been run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from multiattn.io import atomic_path  # noqa: E402

TASKS = ("stn", "captioning", "asr")


def right_answers(demo: Path, task: str) -> set[str]:
    """Names of the overlays whose prediction matches the truth the demo exported beside its input."""
    predictions = demo / "predictions" / f"{task}.jsonl"
    if not predictions.is_file():
        return set()
    right = set()
    for line in predictions.read_text().splitlines():
        record = json.loads(line)
        source, answer = (
            Path(record["file"]),
            record.get("label") or record.get("caption") or record.get("text"),
        )
        digit = re.search(r"_digit(\w+)$", source.stem)
        truths = source.with_suffix(".txt")
        if digit:
            expected = {digit.group(1)}
        elif truths.is_file():
            expected = {text.strip().lower() for text in truths.read_text().splitlines() if text.strip()}
        else:
            continue
        if record.get("overlay") and str(answer).strip().lower() in expected:
            right.add(Path(record["overlay"]).name)
    return right


def copy_overlays(demo: Path, images: Path) -> list[Path]:
    written = []
    for task in TASKS:
        right = right_answers(demo, task)
        overlays = sorted(
            (demo / "overlays" / task).glob("*.png"),
            key=lambda p: (p.name not in right, p.stat().st_size, p.name),
        )
        if not overlays:
            print(f"readme-images: no {task} overlay in {demo / 'overlays' / task}: kept the old picture")
            continue
        target = images / f"{task}_overlay.png"
        with atomic_path(target) as tmp:
            shutil.copyfile(overlays[0], tmp)
        written.append(target)
    return written


def screenshot(index: Path, target: Path) -> bool:
    """A screenshot of the report with one caption word selected (headless Chromium)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("readme-images: chromium not installed: report.png kept (make browser installs it)")
        return False
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("readme-images: playwright not installed: report.png kept")
        return False
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    args += ["--disable-sync", "--no-first-run", "--disable-quic"]
    with sync_playwright() as p, atomic_path(target) as tmp:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(index.resolve().as_uri())
        page.wait_for_load_state("load")
        captioning = page.get_by_role("button", name="captioning")
        if captioning.count():
            captioning.click()
            words = page.locator(".item").first.locator("[data-testid=word]")
            if words.count() > 1:
                words.nth(1).click()
        page.wait_for_timeout(300)
        page.screenshot(path=str(tmp), type="png")
        browser.close()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--demo", type=Path, default=ROOT / "outputs" / "demo", help="make demo's output folder"
    )
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images", help="where the pictures go")
    args = parser.parse_args(argv)
    index = args.demo / "index.html"
    if not index.is_file():
        print(f"readme-images: error: {index} not found: run make demo first", file=sys.stderr)
        return 2
    for path in copy_overlays(args.demo, args.images):
        print(f"readme-images: wrote {path}")
    if screenshot(index, args.images / "report.png"):
        print(f"readme-images: wrote {args.images / 'report.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
