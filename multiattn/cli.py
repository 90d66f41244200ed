"""The ``multiattn`` command.

``multiattn fit|validate|test|predict -c configs/<task>.yaml [--trainer.* --model.* --data.*]``
is a LightningCLI in subclass mode: any LightningModule / LightningDataModule named by
``class_path`` in the config. ``multiattn caption|classify|transcribe|report`` are application
commands that the tasks register as ``multiattn.apps`` entry points (see ``pyproject.toml``), so
this module never imports a task.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib import metadata

from multiattn.extras import MissingExtraError
from multiattn.runtime import keep_freed_memory

LIGHTNING_COMMANDS = {
    "fit": "train a task (writes outputs/<task>/checkpoints/{last,best}.ckpt)",
    "validate": "run the validation loop of a checkpoint",
    "test": "run the test loop of a checkpoint (test-split metrics)",
    "predict": "run predict_step over the datamodule's predict split",
}
APP_COMMANDS = {
    "caption": "caption images with a captioning checkpoint (per-word attention overlays)",
    "classify": "classify images with a spatial transformer checkpoint (sampled region overlays)",
    "transcribe": "transcribe audio with a speech checkpoint (attention / CTC alignment overlays)",
    "report": "write the HTML attention explorer for one or more checkpoints",
}
ENTRY_POINT_GROUP = "multiattn.apps"


def _quiet_known_noise() -> None:
    # jsonargparse >= 4.49 warns about APIs that Lightning 2.6 still uses; the warning is for
    # Lightning's developers, not for our users (REFERENCE.md). Other warnings stay visible.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")


def usage() -> str:
    width = max(map(len, [*LIGHTNING_COMMANDS, *APP_COMMANDS]))
    lines = ["usage: multiattn COMMAND [options]   (multiattn COMMAND --help for the options)", ""]
    lines.append(
        "training and evaluation (LightningCLI; -c configs/<task>.yaml, or -c <name> of `multiattn configs`):"
    )
    lines += [f"  {name:<{width}}  {text}" for name, text in LIGHTNING_COMMANDS.items()]
    lines += ["", "applications (take files and --ckpt):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in APP_COMMANDS.items()]
    lines += ["", f"  {'configs':<{width}}  list the packaged configs (-c NAME runs one), or print one"]
    return "\n".join(lines)


def _app_entry_point(name: str):
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep
    return None


def run_app_command(name: str, argv: Sequence[str]) -> int:
    """Load the task's ``main`` from its entry point and run it."""
    ep = _app_entry_point(name)
    module = ep.value.split(":")[0] if ep else None
    try:
        if ep is None:
            raise ModuleNotFoundError(name)
        main = ep.load()
    except ModuleNotFoundError as err:
        # Only "the task's own module is missing" means "not available"; a missing dependency
        # inside an existing task is a real error and must surface.
        if ep is not None and err.name is not None and not module.startswith(err.name):
            raise
        print(
            f"multiattn {name}: this task is not available yet in this installation "
            f"(module {module or '?'} not found)",
            file=sys.stderr,
        )
        return 2
    return int(main(list(argv)) or 0)


def run_lightning(argv: Sequence[str]) -> int:
    """Run the LightningCLI with ``argv`` (a subcommand first)."""
    from multiattn.extras import require

    require("jsonargparse", f"multiattn {argv[0]}")  # LightningCLI's parser, in the eval extra
    from multiattn.lightning_cli import build_cli

    build_cli(list(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_known_noise()
    keep_freed_memory()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "configs":
        from multiattn.config_files import main as configs_main

        return configs_main(rest)
    if command in APP_COMMANDS:
        return run_app_command(command, rest)
    if command in LIGHTNING_COMMANDS or command.startswith("-"):
        try:
            return run_lightning(argv)
        except MissingExtraError as err:
            print(f"multiattn: error: {err}", file=sys.stderr)
            return 2
    print(f"multiattn: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
