"""The task registry: each task declares itself once, as an entry point of the ``multiattn.apps`` group.

An entry point's name is an application command (``multiattn <name> ...``); its value is either a
:class:`Task` (a task package's one declaration: the command's help text and ``main``, the report
adapter, the file types it reads, the explorer renderer, the LightningModule its checkpoints hold)
or a :class:`Command` (a command that belongs to no task, such as ``report``). A bare callable is
accepted as a command without help text. ``multiattn/cli.py``, the report builder and the explorer
find tasks only through :func:`tasks` and :func:`commands`, so adding a task means one new package
and one entry-point line in its distribution's ``pyproject.toml``; no existing file changes.

Declarations are cheap to import (``multiattn --help`` loads every one): a task names its pieces as
``"module:attribute"`` strings relative to its own package (``".app:main"``), imported on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from typing import Any, NamedTuple

__all__ = [
    "ENTRY_POINT_GROUP",
    "Command",
    "Inputs",
    "Task",
    "Unavailable",
    "registered_entry_points",
    "load_registry",
    "tasks",
    "commands",
    "resolve",
]

ENTRY_POINT_GROUP = "multiattn.apps"

Reference = str | Callable[..., Any]
"""A callable, or ``"module:attribute"`` (a leading ``.`` = relative to the declaring package)."""


def resolve(reference: Any, package: str | None = None) -> Any:
    """The object a :data:`Reference` names (anything that is not a string is returned as is)."""
    if not isinstance(reference, str):
        return reference
    module, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module, package or None)
    for part in filter(None, attribute.split(".")):
        target = getattr(target, part)
    return target


@dataclass(frozen=True)
class Command:
    """An application command.

    Attributes:
        name: the command (``multiattn NAME``); the entry point's name.
        help: one line for ``multiattn --help``.
        main: ``main(argv) -> exit status`` (a :data:`Reference`).
        package: where a relative ``main`` reference resolves.
    """

    name: str
    help: str
    main: Reference
    package: str = ""

    def run(self, argv: Sequence[str]) -> int:
        return int(resolve(self.main, self.package)(list(argv)) or 0)


class Inputs(NamedTuple):
    """The files a task reads as ``report --inputs``.

    Attributes:
        kind: what they are, for messages ("image", "audio").
        extensions: their suffixes (lower case, with the dot), or a :data:`Reference` to them.
    """

    kind: str
    extensions: Reference


@dataclass(frozen=True)
class Task:
    """A task's declaration (``tasks/<task>/task.py`` for the built-in ones).

    Attributes:
        name: the task's short name: the report section's ``task`` kind, the data folder under
            ``report --data-dir``.
        help: one line for ``multiattn --help`` describing the app command.
        system: the LightningModule class of its checkpoints (tried on checkpoints that do not
            record a class path).
        inputs: the files it reads as ``--inputs`` (:class:`Inputs`).
        title: the report tab's title ("classifier", "speech", ...; default: ``name``).
        package: the declaring package: relative references resolve in it, and a checkpoint whose
            LightningCLI class path lies inside it belongs to this task (default: the package of
            the module the entry point names, filled in by :func:`load_registry`).
        app: ``main(argv)`` of the app command (default ``.app:main``).
        report: ``build_section(request) -> section dict`` for ``multiattn report``, where
            ``request`` is a ``multiattn.tasks.common.report.SectionRequest`` (default
            ``.report:build_section``).
        pipeline: the :class:`multiattn.pipeline.Pipeline` subclass ``multiattn.load`` returns for
            its checkpoints (default ``.pipeline:PIPELINE``).
        renderer: a JavaScript file inside ``package`` (default ``explorer.js``) that sets
            ``window.MULTIATTN_RENDERERS[name] = (item, helpers) => [DOM nodes]`` for the explorer
            (``multiattn/explorer/static/explorer.js`` documents ``helpers``).
    """

    name: str
    help: str
    system: Reference
    inputs: Inputs
    title: str = ""
    package: str = ""
    app: Reference = ".app:main"
    report: Reference = ".report:build_section"
    renderer: str = "explorer.js"
    pipeline: Reference = ".pipeline:PIPELINE"

    def __post_init__(self) -> None:
        # The name becomes a file name (render-<name>.js) and a JavaScript property.
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"task name {self.name!r}: expected lower-case letters, digits and _")
        if not self.title:
            object.__setattr__(self, "title", self.name)  # frozen dataclass: set once, here

    def load(self, piece: str) -> Any:
        """The object one of the reference attributes names (``task.load("report")``)."""
        return resolve(getattr(self, piece), self.package)

    def owns(self, class_path: str) -> bool:
        """Whether a class path (``hyper_parameters["_class_path"]``) lies inside this task's package."""
        return class_path.startswith(f"{self.package}.")

    def extensions(self) -> set[str]:
        return {e.lower() for e in resolve(self.inputs.extensions, self.package)}

    def renderer_source(self) -> str:
        return resources.files(self.package).joinpath(self.renderer).read_text(encoding="utf-8")

    def command(self, name: str) -> Command:
        return Command(name=name, help=self.help, main=self.app, package=self.package)


@dataclass(frozen=True)
class Unavailable:
    """An entry point whose own module is missing (a task not installed in this environment)."""

    name: str
    module: str


def registered_entry_points() -> list[metadata.EntryPoint]:
    """Every installed distribution's ``multiattn.apps`` entry points: the one place tasks are looked up."""
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_registry() -> tuple[dict[str, Task], dict[str, Command | Unavailable]]:
    """``(tasks by task name, commands by command name)`` from :func:`registered_entry_points`.

    Sorted by name. A task's app command appears among the commands. An entry point whose own
    module cannot be imported becomes :class:`Unavailable`; any other import error propagates
    (a task whose dependency is missing must say so).
    """
    found_tasks: dict[str, Task] = {}
    found: dict[str, Command | Unavailable] = {}
    for entry in sorted(registered_entry_points(), key=lambda e: e.name):
        try:
            value = entry.load()
        except ModuleNotFoundError as err:
            if err.name is None or not entry.module.startswith(err.name):
                raise
            found[entry.name] = Unavailable(entry.name, entry.module)
            continue
        if isinstance(value, Task):
            if not value.package:
                value = dataclasses.replace(value, package=entry.module.rpartition(".")[0])
            if value.name in found_tasks and found_tasks[value.name] != value:
                raise RuntimeError(f"two tasks named {value.name!r} are registered")
            found_tasks[value.name] = value
            found[entry.name] = value.command(entry.name)
        elif isinstance(value, Command):
            found[entry.name] = value
        elif callable(value):
            found[entry.name] = Command(name=entry.name, help="", main=value)
        else:
            raise TypeError(
                f"entry point {entry.name} = {entry.value}: expected a Task, a Command or a callable"
            )
    return dict(sorted(found_tasks.items())), found


def tasks() -> dict[str, Task]:
    """Every registered task, by name."""
    return load_registry()[0]


def commands() -> dict[str, Command | Unavailable]:
    """Every registered application command, by command name."""
    return load_registry()[1]
