"""The ``multiattn`` command.

``multiattn fit|validate|test|predict -c configs/<task>.yaml [--trainer.* --model.* --data.*]``
is a LightningCLI in subclass mode: any LightningModule / LightningDataModule named by
``class_path`` in the config. Every other command (each task's app command, ``report``) is
found in the task registry (:mod:`multiattn.registry`, the ``multiattn.apps`` entry points), so
this module names no task and never imports one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from multiattn.extras import MissingExtraError
from multiattn.registry import Command, Unavailable, commands
from multiattn.runtime import keep_freed_memory

LIGHTNING_COMMANDS = {
    "fit": "train a task (writes outputs/<task>/checkpoints/{last,best}.ckpt)",
    "validate": "run the validation loop of a checkpoint",
    "test": "run the test loop of a checkpoint (test-split metrics)",
    "predict": "run predict_step over the datamodule's predict split",
}

# Commands of the core itself (no task): listed with the registry's application commands.
CORE_COMMANDS = {
    "export": Command(
        name="export",
        help="export a checkpoint's model for serving (ONNX or torch.export)",
        main="multiattn.export:main",
    ),
}


def _commands() -> dict[str, Command | Unavailable]:
    return dict(sorted({**commands(), **CORE_COMMANDS}.items()))


def _quiet_known_noise() -> None:
    # jsonargparse >= 4.49 warns about APIs that Lightning 2.6 still uses; the warning is for
    # Lightning's developers, not for our users (docs/conventions.md, "Lightning and PyTorch").
    # Other warnings stay visible.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")


def usage() -> str:
    apps = _commands()
    width = max(map(len, [*LIGHTNING_COMMANDS, *apps]))
    lines = ["usage: multiattn COMMAND [options]   (multiattn COMMAND --help for the options)", ""]
    lines.append(
        "training and evaluation (LightningCLI; -c configs/<task>.yaml, or -c <name> of `multiattn configs`):"
    )
    lines += [f"  {name:<{width}}  {text}" for name, text in LIGHTNING_COMMANDS.items()]
    lines += ["", "applications (take files and --ckpt):"]
    for name, command in apps.items():
        if isinstance(command, Unavailable):
            text = f"(not available: module {command.module} not found)"
        else:
            text = command.help
        lines.append(f"  {name:<{width}}  {text}".rstrip())
    lines += ["", f"  {'configs':<{width}}  list the packaged configs (-c NAME runs one), or print one"]
    return "\n".join(lines)


def run_app_command(name: str, command: Command | Unavailable, argv: Sequence[str]) -> int:
    """Run the registered application command ``name`` with ``argv``."""
    if isinstance(command, Unavailable):
        print(
            f"multiattn {name}: this task is not available yet in this installation "
            f"(module {command.module} not found)",
            file=sys.stderr,
        )
        return 2
    return command.run(argv)


def run_lightning(argv: Sequence[str]) -> int:
    """Run the LightningCLI with ``argv`` (a subcommand first)."""
    from multiattn.extras import require

    require("jsonargparse", f"multiattn {argv[0]}")  # LightningCLI's parser, in the eval extra
    from multiattn.lightning_cli import build_cli

    build_cli(list(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(argv)
    except BrokenPipeError:
        # The reader of our output went away (`multiattn configs | head`): stop quietly, as Unix
        # tools do, instead of a traceback (Python's documented recipe: stdout onto /dev/null so the
        # interpreter's final flush cannot raise again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(argv: Sequence[str] | None) -> int:
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
    if command in LIGHTNING_COMMANDS or command.startswith("-"):
        try:
            return run_lightning(argv)
        except MissingExtraError as err:
            print(f"multiattn: error: {err}", file=sys.stderr)
            return 2
    apps = _commands()
    if command in apps:
        return run_app_command(command, apps[command], rest)
    print(f"multiattn: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
