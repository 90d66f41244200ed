"""``multiattn predict`` keeps what it computes: one JSON line per predicted item, written atomically.

Lightning's :class:`~lightning.pytorch.callbacks.BasePredictionWriter` is the hook for this; it
leaves the file format to us. Each task's ``predict_step`` returns either a list of per-item dicts
(captioning, speech) or a dict of batched tensors (the classifier); both become one JSON object per
item, with ``index`` (the item's position in the predict split) first. Lines follow the loader's
order (the speech loader batches utterances of similar length together); ``index`` is the key.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import IO, Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from multiattn.io import atomic_open, to_jsonable

__all__ = ["JSONLinesPredictionWriter", "split_items"]


def split_items(prediction: Any) -> list[dict[str, Any]]:
    """One dict per item from what a ``predict_step`` returned.

    A list (or tuple) of dicts is taken as is; a dict of batched values (tensors or lists whose first
    axis is the batch, ``None`` for absent ones) is cut along its first axis, ``None`` values dropped.
    """
    if prediction is None:
        return []
    if isinstance(prediction, (list, tuple)):
        if not all(isinstance(item, dict) for item in prediction):
            raise TypeError("predict_step must return a list of dicts or a dict of batched values")
        return [dict(item) for item in prediction]
    if not isinstance(prediction, dict):
        raise TypeError(f"predict_step returned {type(prediction).__name__}; expected a list or a dict")
    batched = {key: value for key, value in prediction.items() if value is not None}
    sizes = {len(value) for value in batched.values()}
    if len(sizes) > 1:
        raise ValueError(f"predict_step's batched values differ in length: {sorted(sizes)}")
    size = sizes.pop() if sizes else 0
    return [{key: value[i] for key, value in batched.items()} for i in range(size)]


class JSONLinesPredictionWriter(BasePredictionWriter):
    """Write every prediction as a JSON line to ``<output_dir>/<checkpoint stem>.jsonl``.

    ``multiattn predict -c configs/stn.yaml --ckpt_path outputs/stn/checkpoints/best.ckpt`` writes
    ``outputs/stn/predictions/best.jsonl``. The file is written beside its final name and renamed
    onto it only when the predict loop finishes, so an interrupted run leaves any earlier file whole;
    predicting again with the same checkpoint replaces it. Under several processes each writes its
    own ``<stem>.rank<N>.jsonl`` (the items of its shard).

    Args:
        output_dir: folder of the prediction files (created when missing).
        exclude: keys of the predictions left out of the file (e.g. image tensors).
    """

    def __init__(self, output_dir: str = "outputs/predictions", exclude: list[str] | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.exclude = set(exclude or ())
        self.path: Path | None = None
        self._stack: contextlib.ExitStack | None = None
        self._handle: IO[str] | None = None
        self._count = 0

    def file_name(self, trainer: Trainer) -> str:
        stem = Path(trainer.ckpt_path).stem if trainer.ckpt_path else "predictions"
        return f"{stem}.rank{trainer.global_rank}.jsonl" if trainer.world_size > 1 else f"{stem}.jsonl"

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close(commit=False)  # a previous loop that never ended
        self.path = self.output_dir / self.file_name(trainer)
        self._stack = contextlib.ExitStack()
        self._handle = self._stack.enter_context(atomic_open(self.path, "w", encoding="utf-8"))
        self._count = 0

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if self._handle is None:
            return
        items = split_items(prediction)
        indices = list(batch_indices) if batch_indices and len(batch_indices) == len(items) else None
        for position, item in enumerate(items):
            index = indices[position] if indices is not None else self._count + position
            record = {"index": int(index)}
            record.update((k, to_jsonable(v)) for k, v in item.items() if k not in self.exclude)
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._count += len(items)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close(commit=True)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._close(commit=False)

    def _close(self, *, commit: bool) -> None:
        stack, self._stack, self._handle = self._stack, None, None
        if stack is None:
            return
        if commit:
            stack.close()
        else:  # leave the temporary file's rename undone: whatever was at the path stays
            stack.__exit__(RuntimeError, RuntimeError("prediction interrupted"), None)
