"""Corpus metrics under data-parallel evaluation.

BLEU, CIDEr-D and WER are corpus statistics: the mean of per-process values is not the value
over the whole split (CIDEr-D's document frequencies, for one, depend on every caption). So each
process keeps one record per evaluated item and :func:`gather_records` hands every process the
records of all of them before the metrics are computed; every rank then logs the same numbers.
Lightning's distributed sampler pads the shards to equal length by repeating items, so records
carry the item's id and the repeats are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

import torch.distributed as dist

import multiattn.runtime  # noqa: F401 - registers the process group's destruction at exit

__all__ = ["gather_records"]

T = TypeVar("T")


def gather_records(records: list[T], key: Callable[[T], Hashable]) -> list[T]:
    """Every process's ``records``, on every process, each item once.

    Args:
        records: this process's per-item evaluation records (picklable).
        key: the item's id (an image id, an audio path); a record whose id was seen before
            (from the sampler's padding) is dropped.

    Returns:
        The records of all processes, rank 0's first, repeats dropped; in a single process (or
        without an initialised process group) ``records`` itself.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return records
    shards: list[list[T] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(shards, records)
    seen: set[Hashable] = set()
    unique = []
    for record in (record for shard in shards for record in (shard or [])):
        item = key(record)
        if item not in seen:
            seen.add(item)
            unique.append(record)
    return unique
