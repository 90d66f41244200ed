"""``make demo``: train the three tasks briefly, run the app commands, build the attention explorer.

    python scripts/demo.py [--reuse-checkpoints] [--limit 48] [--examples 4]

Steps (run from the repository root; everything lands under ``outputs/demo/``):

1. ``multiattn fit -c configs/<task>_demo.yaml`` for ``stn``, ``captioning`` and ``asr``, the
   three at once (one thread each: on two cores that is faster than one after the other), each on
   its embedded default data with a short schedule. Progress (epoch per task, elapsed time) is
   printed every 20 s; each run's log is ``outputs/demo/<task>/fit.log``.
2. A few held-out test examples of each task are exported as ordinary files
   (``outputs/demo/inputs/<task>/``: PNG images, WAV audio).
3. ``multiattn classify`` / ``caption`` / ``transcribe`` on them with ``--overlay-dir
   outputs/demo/overlays/<task> --json`` (JSON lines in ``outputs/demo/predictions/<task>.jsonl``).
4. ``multiattn report`` with the three checkpoints over the first ``--limit`` test examples:
   ``outputs/demo/index.html``.

The demo writes nothing outside ``outputs/``: its generated data is cached under
``outputs/demo/data/`` (the demo configs' ``data_dir``) and the repository's files stay as they
are. The README's pictures are refreshed from the demo's outputs by a separate command,
``make readme-images`` (``scripts/readme_images.py``).

A failing step stops the demo with the failing command and the end of its log (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("outputs/demo")
TASKS = ("stn", "captioning", "asr")
APPS = {"stn": "classify", "captioning": "caption", "asr": "transcribe"}
STARTED = time.monotonic()


def elapsed() -> str:
    seconds = int(time.monotonic() - STARTED)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def say(text: str) -> None:
    print(f"[{elapsed()}] {text}", flush=True)


def multiattn_command() -> list[str]:
    """How the user types it: the venv's console script when there is one."""
    venv = Path(".venv/bin/multiattn")
    return [str(venv)] if venv.exists() else ["multiattn"]


def shown(argv: list[str]) -> str:
    return shlex.join(multiattn_command() + argv)


def fail(step: str, argv: list[str], log: Path | None, detail: str = "") -> None:
    print(f"\ndemo: FAILED at {step}\n  command: {shown(argv)}", file=sys.stderr)
    if detail:
        print(f"  {detail}", file=sys.stderr)
    if log is not None and log.exists():
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print(f"  last lines of {log}:\n" + "\n".join("    " + line for line in tail), file=sys.stderr)
    raise SystemExit(1)


def environment() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "JSONARGPARSE_DEPRECATION_WARNINGS": "off",
        "PYTHONUNBUFFERED": "1",
    }


def run(step: str, argv: list[str], *, stdout: Path | None = None) -> None:
    """Run ``multiattn <argv>`` to completion; stop the demo if it fails."""
    log = OUT / "logs" / f"{step}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as err, open(stdout, "w") if stdout else open(os.devnull, "w") as out:
        code = subprocess.call(
            [sys.executable, "-m", "multiattn.cli", *argv], stdout=out, stderr=err, env=environment()
        )
    if code != 0:
        fail(step, argv, log, f"exit status {code}")


# ---- 1. training ------------------------------------------------------------------------------
def checkpoint_of(task: str) -> Path:
    folder = OUT / task / "checkpoints"
    best = folder / "best.ckpt"
    return best if best.is_file() else folder / "last.ckpt"


def _epoch(task: str, since: float) -> str:
    """The training progress of a run from its TensorBoard log (the version written since ``since``)."""
    versions = sorted(
        (
            p
            for p in (OUT / task / "logs").glob("version_*/events.out.tfevents.*")
            if p.stat().st_mtime >= since
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not versions:
        return "starting / generating data"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    try:
        events = EventAccumulator(str(versions[-1]), size_guidance={"scalars": 0}).Reload()
        epochs = (
            [int(e.value) for e in events.Scalars("epoch")] if "epoch" in events.Tags()["scalars"] else []
        )
    except Exception:  # a file being written; progress is only informative
        return "training"
    return f"epoch {max(epochs) + 1}" if epochs else "training"


def train(reuse: bool) -> None:
    todo = [t for t in TASKS if not (reuse and checkpoint_of(t).is_file())]
    for task in TASKS:
        if task not in todo:
            say(f"step 1/4: {task}: reusing {checkpoint_of(task)}")
    runs = {}
    wall_start = time.time()
    for task in todo:
        # A stale best.ckpt would make ModelCheckpoint write best-v1.ckpt beside it.
        shutil.rmtree(OUT / task / "checkpoints", ignore_errors=True)
        argv = ["fit", "-c", f"configs/{task}_demo.yaml"]
        log = OUT / task / "fit.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log, "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "multiattn.cli", *argv],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
        runs[task] = (process, argv, log, handle, time.monotonic())
    if todo:
        say(f"step 1/4: training {', '.join(todo)} together (logs: outputs/demo/<task>/fit.log)")
    last_report = 0.0
    while runs:
        time.sleep(2)
        for task, (process, argv, log, handle, began) in list(runs.items()):
            code = process.poll()
            if code is None:
                continue
            handle.close()
            del runs[task]
            if code != 0:
                for proc, *_rest in runs.values():  # stop only the runs this demo started
                    proc.terminate()
                    proc.wait()
                fail(f"training {task}", argv, log, f"exit status {code}")
            if not checkpoint_of(task).is_file():
                fail(f"training {task}", argv, log, f"no checkpoint written at {checkpoint_of(task)}")
            say(f"  {task} trained in {(time.monotonic() - began) / 60:.1f} min -> {checkpoint_of(task)}")
        if runs and time.monotonic() - last_report > 20:
            last_report = time.monotonic()
            say("  training: " + " · ".join(f"{t} {_epoch(t, wall_start)}" for t in runs))


# ---- 2. held-out examples as files ---------------------------------------------------------------
def export_examples(task: str, count: int) -> list[Path]:
    """The last ``count`` test examples of the checkpoint's data, as files a user could have."""
    from multiattn.checkpoint import load_checkpoint
    from multiattn.registry import tasks
    from multiattn.tasks.common.report import datamodule_from_checkpoint, write_png, write_wav

    folder = OUT / "inputs" / task
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    checkpoint = load_checkpoint(checkpoint_of(task))
    package = tasks()[task].package
    files = []
    if task == "stn":
        from multiattn.tasks.stn.data import STNDataModule

        datamodule, _ = datamodule_from_checkpoint(checkpoint, package, STNDataModule, None)
        datamodule.setup("test")
        dataset = datamodule.datasets["test"]
        for index in range(len(dataset) - count, len(dataset)):
            batch = dataset[index]
            label = datamodule.class_names[int(batch.labels[0])]
            path = folder / f"test{index:05d}_digit{label}.png"
            write_png(batch.images[0].numpy(), path)
            files.append(path)
    elif task == "captioning":
        from multiattn.tasks.captioning.data import SceneCaptionData
        from multiattn.tasks.captioning.images import denormalize

        datamodule, _ = datamodule_from_checkpoint(checkpoint, package, SceneCaptionData, None)
        datamodule.setup("test")
        dataset = datamodule.datasets["test"]
        for index in range(len(dataset) - count, len(dataset)):
            path = folder / f"scene{index:05d}.png"
            write_png(denormalize(dataset[index].image).numpy(), path)
            # its reference captions beside it, one per line (make readme-images shows a right one)
            (folder / f"scene{index:05d}.txt").write_text("\n".join(dataset[index].references) + "\n")
            files.append(path)
    else:
        from multiattn.tasks.asr.audio import SAMPLE_RATE
        from multiattn.tasks.asr.data import ASRDataModule

        datamodule, _ = datamodule_from_checkpoint(checkpoint, package, ASRDataModule, None)
        datamodule.setup("test")
        dataset = datamodule.datasets["test"]
        for index in range(len(dataset) - count, len(dataset)):
            item = dataset.load(index)
            path = folder / f"utterance{index:05d}.wav"
            write_wav(item.waveform.numpy(), SAMPLE_RATE, path)
            (folder / f"utterance{index:05d}.txt").write_text(item.text + "\n")
            files.append(path)
    return files


def report_command(limit: int) -> list[str]:
    """``multiattn report``'s arguments: the explorer goes into ``OUT`` beside the demo's own folders,
    so ``--force`` (which replaces only the report's entries there and keeps the rest)."""
    argv = ["report"] + [f"--ckpt={checkpoint_of(t)}" for t in TASKS]
    return argv + ["--split", "test", "--limit", str(limit), "--out", str(OUT), "--force"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reuse-checkpoints", action="store_true", help="skip training a task whose demo checkpoint exists"
    )
    parser.add_argument("--limit", type=int, default=48, help="test examples per task in the report")
    parser.add_argument(
        "--examples", type=int, default=4, help="held-out files per task for the app commands"
    )
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    say(f"multiattn demo in {ROOT} ({os.cpu_count()} CPU cores); outputs under {OUT}/")
    step_times = {}

    began = time.monotonic()
    train(args.reuse_checkpoints)
    step_times["training"] = time.monotonic() - began

    began = time.monotonic()
    say("step 2/4: exporting held-out test examples as files")
    inputs = {}
    for task in TASKS:
        try:
            inputs[task] = export_examples(task, args.examples)
        except Exception as err:
            fail(f"exporting {task} examples", ["(scripts/demo.py export_examples)", task], None, repr(err))
        say(f"  {task}: {len(inputs[task])} files in {OUT / 'inputs' / task}")

    say("step 3/4: classify / caption / transcribe the held-out files")
    commands = []
    for task in TASKS:
        overlay_dir = OUT / "overlays" / task
        if overlay_dir.is_dir():
            shutil.rmtree(overlay_dir)
        predictions = OUT / "predictions" / f"{task}.jsonl"
        predictions.parent.mkdir(parents=True, exist_ok=True)
        folder = OUT / "inputs" / task
        argv = [APPS[task], str(folder), "--ckpt", str(checkpoint_of(task))]
        argv += ["--overlay-dir", str(overlay_dir), "--json"]
        run(f"{APPS[task]}", argv, stdout=predictions)
        commands.append(shown(argv))
        for line in predictions.read_text().splitlines():
            record = json.loads(line)
            result = record.get("label") or record.get("caption") or record.get("text") or ""
            say(f"  {APPS[task]}: {Path(record['file']).name}: {result}")
    step_times["app commands"] = time.monotonic() - began

    began = time.monotonic()
    say(f"step 4/4: building the report ({args.limit} test examples per task)")
    report_argv = report_command(args.limit)
    run("report", report_argv)
    index = OUT / "index.html"
    if not index.is_file():
        fail("report", report_argv, OUT / "logs" / "report.log", f"{index} was not written")
    step_times["report"] = time.monotonic() - began

    size = sum(f.stat().st_size for f in OUT.glob("assets/**/*") if f.is_file())
    size += sum((OUT / n).stat().st_size for n in ("index.html", "data.js", "explorer.js", "explorer.css"))
    print()
    say("done. " + ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in step_times.items()))
    print(f"\nThe attention explorer ({size / 1e6:.1f} MB, no server needed): open\n  {index.resolve()}\n")
    print("To do the same by hand:")
    for task in TASKS:
        print(f"  {shown(['fit', '-c', f'configs/{task}_demo.yaml'])}")
    for command in commands:
        print(f"  {command}")
    print(f"  {shown(report_argv)}")
    print("\nThe README's pictures come from these outputs: make readme-images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
