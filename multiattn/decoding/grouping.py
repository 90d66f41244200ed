"""Beam grouping: the hypothesis rows of one item share that item's memory.

Beam search reorders the decoder state after every step, but a hypothesis only ever moves
between the rows of its own batch item, and every row of one item holds the same encoder memory
(an image grid, projected cross-attention keys / values). Copying those ``(N, S, ...)`` tensors
every step costs more than the attention itself. So the rows' owning items are tracked
(:func:`reindex_items`), and memory is re-gathered only when some row would receive another
item's memory: the first expansion from ``B`` to ``B * K`` rows, or a search that drops rows.

Beam search keeps each item's ``K`` rows next to each other, so memory is kept once per group of
consecutive rows (:meth:`ItemMemory.shared`, :func:`consecutive_groups`), and the attention
modules broadcast over groups (:class:`QueryGroups`): ``G`` key rows serve ``B = G * K`` query
rows, row ``b`` reading key row ``b // K``. That is ``K`` times less memory to gather when rows
are dropped and to read at every step. This module is a speed-up only: with ``K = 1`` (``G = B``)
every function here is the identity, and the attention modules compute the textbook algorithm.

Shape legend: ``B`` items (or query rows), ``N`` hypothesis rows, ``G`` groups of ``K = N // G``
consecutive rows, ``nh`` heads, ``T`` queries per row, ``S`` keys, ``C`` value channels.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["ItemMemory", "QueryGroups", "consecutive_groups", "reindex_items"]


def reindex_items(items: Tensor, indices: Tensor) -> tuple[Tensor, bool]:
    """Follow a reorder of hypothesis rows.

    Args:
        items: ``(N,)`` the item each row belongs to.
        indices: ``(N',)`` rows kept, in their new order.

    Returns:
        ``(new_items (N',), unchanged)``: ``unchanged`` is ``True`` when every row still belongs to
        the item it belonged to before, so per-item memory needs no copy.
    """
    new_items = items.index_select(0, indices.to(items.device))
    return new_items, torch.equal(new_items, items)


def consecutive_groups(items: Tensor) -> Tensor | None:
    """The item of each group of consecutive rows, ``(G,)``, when ``items (N,)`` forms equal groups.

    ``None`` when the groups differ in size (a search dropped some rows of an item): then every
    row needs its own copy of its item's memory.
    """
    groups, counts = torch.unique_consecutive(items, return_counts=True)  # (G,), (G,)
    return groups if bool((counts == counts[0]).all()) else None


class ItemMemory:
    """Tensors with one entry per batch item, seen per hypothesis row.

    ``memory.rows[i]`` is ``tensors[i]`` gathered for the current rows (``(N, ...)``), and
    ``memory.shared()[i]`` the same with one entry per group of consecutive rows of one item
    (``(G, ...)``). ``reorder(indices)`` returns the memory for the kept rows; both views are
    gathered lazily, and again only when a row changes item (see :func:`reindex_items`).

    Args:
        *tensors: ``(B, ...)`` per-item tensors.
    """

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("ItemMemory: expected at least one tensor")
        self.base = tensors
        self.items = torch.arange(tensors[0].shape[0], device=tensors[0].device)  # (N,)
        self._rows: tuple[Tensor, ...] | None = tensors
        self._shared: tuple[Tensor, ...] | None = tensors

    def reorder(self, indices: Tensor) -> ItemMemory:
        """The memory of rows ``indices`` (``(N',)`` long); ``self`` is left unchanged."""
        moved = copy.copy(self)
        moved.items, unchanged = reindex_items(self.items, indices)
        if not unchanged:
            moved._rows = moved._shared = None
        return moved

    @property
    def rows(self) -> tuple[Tensor, ...]:
        """The memory of every row: ``(N, ...)`` per tensor."""
        if self._rows is None:
            self._rows = tuple(t.index_select(0, self.items) for t in self.base)
        return self._rows

    def shared(self) -> tuple[Tensor, ...]:
        """The memory of each group of consecutive rows that share an item: ``(G, ...)`` per tensor.

        ``G`` divides ``N`` and row ``r`` reads entry ``r // (N // G)``; when the rows do not form
        equal groups, ``G = N`` and this is :attr:`rows`.
        """
        if self._shared is None:
            groups = consecutive_groups(self.items)
            self._shared = (
                self.rows if groups is None else tuple(t.index_select(0, groups) for t in self.base)
            )
        return self._shared


class QueryGroups(NamedTuple):
    """``B = G * K`` query rows over ``G`` key rows: query row ``b`` reads key row ``b // K``.

    Attributes:
        groups: ``G``, rows of the keys (or grids).
        per_group: ``K``, consecutive query rows per key row (``1``: one key row per query row).
    """

    groups: int
    per_group: int

    @classmethod
    def of(cls, queries: int, keys: int, *, what: str) -> QueryGroups:
        """The grouping of ``queries`` rows over ``keys`` rows; ``ValueError`` naming ``what`` unless ``keys`` divides ``queries``."""
        if keys == 0 or queries % keys:
            raise ValueError(
                f"{what}: expected {queries} rows or a divisor of it (equal groups of consecutive "
                f"query rows), received {keys} rows"
            )
        return cls(keys, queries // keys)

    def check_mask(self, mask: Tensor | None, *, is_causal: bool) -> None:
        """Grouped queries take a key-padding mask ``(G, S)`` only (no causal or per-query mask)."""
        if self.per_group > 1 and (is_causal or (mask is not None and mask.dim() != 2)):
            raise ValueError(
                f"mask: {self.groups} key rows serve {self.groups * self.per_group} query rows, which "
                "takes a key-padding mask (G, S) only, not a causal or per-query mask"
            )

    def fold_heads(self, q: Tensor) -> Tensor:
        """``(G * K, nh, T, hd)`` -> ``(G, nh, K * T, hd)``: the ``K`` rows' queries as one row's."""
        if self.per_group == 1:
            return q
        _, heads, length, dim = q.shape
        q = q.view(self.groups, self.per_group, heads, length, dim)  # (G, K, nh, T, hd)
        return q.transpose(1, 2).reshape(self.groups, heads, self.per_group * length, dim)

    def unfold_heads(self, x: Tensor) -> Tensor:
        """``(G, nh, K * T, X)`` -> ``(G * K, nh, T, X)``, the inverse of :meth:`fold_heads`."""
        if self.per_group == 1:
            return x
        _, heads, rows, last = x.shape
        x = x.view(self.groups, heads, self.per_group, rows // self.per_group, last)  # (G, nh, K, T, X)
        return x.transpose(1, 2).reshape(self.groups * self.per_group, heads, rows // self.per_group, last)

    def expand(self, x: Tensor) -> Tensor:
        """``(G, ...)`` -> ``(G * K, ...)``: each key row's entry for each of its query rows."""
        return x.repeat_interleave(self.per_group, dim=0) if self.per_group > 1 else x

    def weighted_sum(self, weights: Tensor, values: Tensor) -> Tensor:
        """``weights (G * K, S)`` over ``values (G, S, C)`` -> ``(G * K, C)``, each group's values read once."""
        grouped = weights.to(values.dtype).view(self.groups, self.per_group, -1)  # (B, S) -> (G, K, S)
        return torch.bmm(grouped, values).view(self.groups * self.per_group, values.shape[-1])  # (B, C)
