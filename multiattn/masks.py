"""Masks: one convention, built in one place.

Convention everywhere in multiattn: a boolean mask where ``True`` means *may attend*
(a valid key), ``False`` means *masked out*. Lengths travel beside tensors as ``(B,)`` int64.

Shape legend: ``B`` batch, ``T`` query length, ``S`` key length, ``nh`` heads.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "lengths_to_mask",
    "causal_mask",
    "build_attention_mask",
    "check_shape",
    "check_lengths",
]


def check_shape(name: str, tensor: Tensor, expected: tuple[int | None, ...]) -> None:
    """Raise ``ValueError`` naming the expected and received shape if ``tensor`` does not match.

    ``None`` in ``expected`` matches any size on that axis.
    """
    if not isinstance(tensor, Tensor):
        raise ValueError(
            f"{name}: expected a tensor of shape {_fmt(expected)}, received {type(tensor).__name__}"
        )
    shape = tuple(tensor.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        raise ValueError(f"{name}: expected shape {_fmt(expected)}, received {shape}")


def _fmt(expected: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"


def check_lengths(lengths: Tensor, batch: int, max_len: int, name: str = "lengths") -> None:
    """Validate a ``(B,)`` integer lengths tensor against a batch size and a maximum length.

    The values are checked on the CPU and outside tracing only: on a GPU reading them back would
    stall the queue of kernels (twice per call, in every layer that takes lengths); shape and
    dtype are checked everywhere.
    """
    check_shape(name, lengths, (batch,))
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor, received dtype {lengths.dtype}")
    # The value check reads the tensor: skipped while torch.export / torch.compile trace (the shape
    # and dtype checks above still run), since a traced graph cannot branch on data.
    if (
        batch
        and lengths.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and (int(lengths.min()) < 0 or int(lengths.max()) > max_len)
    ):
        raise ValueError(
            f"{name}: values must lie in [0, {max_len}], received min {int(lengths.min())} max {int(lengths.max())}"
        )


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``(B,)`` lengths -> ``(B, S)`` bool mask, ``True`` on the first ``lengths[b]`` positions."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths: expected shape (B,), received {tuple(lengths.shape)}")
    max_len = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)


def causal_mask(query_len: int, key_len: int | None = None, *, device: torch.device | None = None) -> Tensor:
    """``(T, S)`` bool mask letting query ``t`` see keys ``<= t + (S - T)``.

    With ``S > T`` (incremental decoding with a cache of ``S - T`` earlier steps) the queries are
    the *last* ``T`` positions of the sequence.
    """
    key_len = query_len if key_len is None else key_len
    offset = key_len - query_len
    q = torch.arange(query_len, device=device).unsqueeze(1)
    k = torch.arange(key_len, device=device).unsqueeze(0)
    return k <= q + offset  # (T, S)


def build_attention_mask(
    query_len: int,
    key_len: int,
    *,
    mask: Tensor | None = None,
    is_causal: bool = False,
    batch: int | None = None,
    device: torch.device | None = None,
) -> Tensor | None:
    """Combine a padding / full mask and causality into one ``(B or 1, 1, T, S)`` bool mask.

    Args:
        query_len: ``T``.
        key_len: ``S``.
        mask: ``None``, a key-padding mask ``(B, S)``, or a full mask ``(B, T, S)``; bool,
            ``True`` = may attend.
        is_causal: also forbid attending to later positions (see :func:`causal_mask`).
        batch: expected ``B`` (validated when given).
        device: device for the causal part when ``mask`` is ``None``.

    Returns:
        ``None`` when nothing is masked, else a bool tensor broadcastable to ``(B, nh, T, S)``.
    """
    out: Tensor | None = None
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(f"mask: expected dtype torch.bool (True = may attend), received {mask.dtype}")
        b = batch if batch is not None else mask.shape[0]
        if mask.dim() == 2:
            check_shape("mask", mask, (b, key_len))
            out = mask[:, None, None, :]  # (B, 1, 1, S)
        elif mask.dim() == 3:
            check_shape("mask", mask, (b, query_len, key_len))
            out = mask[:, None, :, :]  # (B, 1, T, S)
        else:
            raise ValueError(
                f"mask: expected shape ({b}, {key_len}) or ({b}, {query_len}, {key_len}), received {tuple(mask.shape)}"
            )
        device = mask.device
    if is_causal:
        causal = causal_mask(query_len, key_len, device=device)[None, None]  # (1, 1, T, S)
        out = causal if out is None else out & causal
    return out
