"""Scaled dot-product multi-head attention, one module for self- and cross-attention.

Vaswani et al. 2017, "Attention Is All You Need": ``softmax(Q K^T / sqrt(hd)) V`` per head.

Two paths with equal outputs:

* fast path (nothing records): the kernel measured fastest for the device, dtype and key length
  (:func:`fast_path_kernel`): ``F.scaled_dot_product_attention`` (flash / fused kernels, never
  materialising the ``(B, nh, T, S)`` weights), or, for short bf16 keys on a CPU, the plain
  matmul -> softmax -> matmul sequence without recording (faster there:
  ``benchmarks/results/attention_vs_torch.md``);
* explicit path (inside :func:`multiattn.recording.record_attention`): the weights are computed,
  emitted with axes ``("batch", "head", "query", "key")`` and then applied.

Rows whose keys are all masked (e.g. an empty source) get zero weights and a zero attended value
in both paths. SDPA would return NaN there, so such rows are unmasked for the kernel and their
result is zeroed afterwards.

Grouped queries (a speed-up of beam search, :class:`multiattn.decoding.grouping.QueryGroups`):
when the (cached) keys have ``G`` rows and the queries ``B = G * K``, query rows
``g*K .. g*K+K-1`` all attend to key row ``g`` (the ``K`` hypotheses of one input share its
cross-attention memory); the ``K`` rows become ``K * T`` queries of one attention call, so the
keys are read once per group instead of once per row. With ``G = B`` nothing changes.

Shape legend: ``B`` batch, ``T`` query length, ``S`` key length, ``D`` embed_dim, ``Dc`` context
dim, ``nh`` num_heads, ``hd`` head_dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multiattn.attention.cache import KVCache
from multiattn.decoding.grouping import QueryGroups
from multiattn.masks import build_attention_mask, check_shape
from multiattn.recording import emit, is_recording

__all__ = [
    "MultiHeadAttention",
    "ProjectedAttention",
    "fast_path_kernel",
    "resolve_source",
    "split_heads",
    "merge_heads",
]

AXES = ("batch", "head", "query", "key")
KERNELS = ("auto", "sdpa", "matmul")
# Up to this key length, bf16 matmuls beat F.scaled_dot_product_attention on a CPU (forward +
# backward, B=8, D=256, 4 heads: 6.6 vs 11.9 ms at T=128, 32 vs 54 ms at T=512, 773 vs 547 ms at
# T=2048; fp32 is even at T=128 and slower beyond). On CUDA the fused kernels are used (compared
# with the matmuls by benchmarks/bench_gpu.py, part "attention").
CPU_MATMUL_MAX_KEYS = 512


def fast_path_kernel(device_type: str, dtype: str, key_len: int) -> str:
    """The fast path's kernel: ``"sdpa"`` or ``"matmul"``, chosen from measurement.

    Args:
        device_type: ``"cpu"``, ``"cuda"``, ...
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (of the queries, i.e. after autocast).
        key_len: ``S``.
    """
    if device_type == "cpu" and dtype == "bf16" and key_len <= CPU_MATMUL_MAX_KEYS:
        return "matmul"
    return "sdpa"


_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(B, L, nh * hd)`` -> ``(B, nh, L, hd)``."""
    batch, length, dim = x.shape
    return x.view(batch, length, num_heads, dim // num_heads).transpose(1, 2)  # (B, nh, L, hd)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, nh, L, hd)`` -> ``(B, L, nh * hd)``."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)  # (B, L, D)


def resolve_source(
    x: Tensor, context: Tensor | None, cache: KVCache | None, *, embed_dim: int, context_dim: int
) -> Tensor | None:
    """Validate ``x`` / ``context`` and return the tensor keys come from (``None``: read the cache).

    Shared by :class:`MultiHeadAttention` and :class:`~multiattn.attention.linear.LinearAttention`.
    """
    check_shape("x", x, (None, None, embed_dim))
    static = cache is not None and getattr(cache, "static", False)
    if static and cache.filled:
        if context is not None:
            check_shape("context", context, (x.shape[0], None, context_dim))
        return None  # keys/values were projected when the cache was filled
    if context is not None:
        check_shape("context", context, (x.shape[0], None, context_dim))
        return context
    if static:
        raise ValueError(
            "context: a static (cross-attention) cache is empty, so context (B, S, Dc) is required"
        )
    return x


class ProjectedAttention(nn.Module):
    """The constructor the dot-product attention modules share: sizes and q/k/v/out projections.

    Keys and values are projected from ``context_dim`` (``embed_dim`` for self-attention).

    Args:
        embed_dim: ``D``, query (and output) dimension.
        num_heads: ``nh``; must divide ``embed_dim``.
        context_dim: ``Dc``, dimension of ``context`` (default ``embed_dim``).
        dropout: dropout on the attention (training only).
        bias: bias in the projections.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        context_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.context_dim = embed_dim if context_dim is None else context_dim
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(self.context_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.context_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)


class MultiHeadAttention(ProjectedAttention):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017).

    Self-attention when ``context is None``, cross-attention otherwise. Separate ``q_proj``,
    ``k_proj``, ``v_proj`` and ``out_proj`` linear layers; :meth:`load_torch_weights` copies the
    weights of a ``torch.nn.MultiheadAttention``.

    Args:
        embed_dim: ``D``, query (and output) dimension.
        num_heads: ``nh``; must divide ``embed_dim``.
        context_dim: ``Dc``, dimension of ``context`` (default ``embed_dim``).
        dropout: dropout on the attention weights (training only).
        bias: bias in the projections.

    Attributes:
        kernel: the fast path's kernel: ``"auto"`` (default, :func:`fast_path_kernel`), or
            ``"sdpa"`` / ``"matmul"`` to force one (benchmarks, parity tests).
    """

    kernel: str = "auto"

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Attend from ``x`` to ``context`` (or to ``x`` itself).

        Args:
            x: ``(B, T, D)`` queries.
            context: ``(B, S, Dc)`` keys/values source, ``None`` for self-attention. May be
                omitted once a static (cross-attention) cache is filled.
            mask: bool, ``True`` = may attend; key padding ``(B, S)`` or full ``(B, T, S)``, where
                ``S`` counts cached keys too. With grouped queries (a static cache of ``G`` rows),
                key padding ``(G, S)`` only.
            is_causal: query ``t`` sees keys ``<= t + (S - T)`` (queries are the last ``T`` steps).
            cache: a :class:`KVCache`; self-attention appends this call's keys/values, a static
                cache is filled from ``context`` on first use and read afterwards.

        Returns:
            ``(B, T, D)``.
        """
        source = resolve_source(x, context, cache, embed_dim=self.embed_dim, context_dim=self.context_dim)
        batch, query_len, _ = x.shape
        q = split_heads(self.q_proj(x), self.num_heads)  # (B, nh, T, hd)
        if source is None:
            k, v = cache.key, cache.value  # (B, nh, S, hd)
        else:
            k = split_heads(self.k_proj(source), self.num_heads)  # (B, nh, S, hd)
            v = split_heads(self.v_proj(source), self.num_heads)  # (B, nh, S, hd)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, nh, S_past + S, hd)
        # Grouped queries (multiattn.decoding.grouping): G cached key rows serve B = G * K query rows.
        groups = QueryGroups.of(batch, k.shape[0], what="cache")
        groups.check_mask(mask, is_causal=is_causal)
        q = groups.fold_heads(q)  # (G, nh, K * T, hd)
        key_len = k.shape[2]
        attn_mask = build_attention_mask(
            q.shape[2], key_len, mask=mask, is_causal=is_causal, batch=groups.groups, device=x.device
        )  # (B or 1, 1, T, S) or None
        kernel = self.kernel
        if kernel == "auto":
            kernel = fast_path_kernel(q.device.type, _DTYPE_NAMES.get(q.dtype, "fp32"), key_len)
        if is_recording():
            out = self._explicit(q, k, v, attn_mask, groups=groups)
        elif kernel == "matmul":
            out = self._explicit(q, k, v, attn_mask, groups=groups, record=False)
        else:
            out = self._fast(
                q, k, v, attn_mask, is_causal=is_causal and mask is None and query_len == key_len
            )
        out = groups.unfold_heads(out)  # (B, nh, T, hd)
        return self.out_proj(merge_heads(out))

    def _fast(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, *, is_causal: bool) -> Tensor:
        dropout_p = self.dropout if self.training else 0.0
        if is_causal:
            # Plain square causal: let the kernel build the mask (flash path); no row is empty.
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        if attn_mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        valid_rows = attn_mask.any(dim=-1, keepdim=True)  # (B or 1, 1, T, 1)
        kernel_mask = attn_mask | ~valid_rows  # empty rows see every key: finite, zeroed below
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=kernel_mask, dropout_p=dropout_p)
        return out * valid_rows.to(out.dtype)  # (B, nh, T, hd)

    def _explicit(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attn_mask: Tensor | None,
        *,
        groups: QueryGroups,
        record: bool = True,
    ) -> Tensor:
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T, S)
        if attn_mask is not None:
            valid_rows = attn_mask.any(dim=-1, keepdim=True)  # (B or 1, 1, T, 1)
            scores = scores.masked_fill(~(attn_mask | ~valid_rows), float("-inf"))
            weights = scores.softmax(dim=-1) * valid_rows.to(scores.dtype)
        else:
            weights = scores.softmax(dim=-1)
        if record:
            emit(self, groups.unfold_heads(weights), axes=AXES)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, p=self.dropout)
        return torch.matmul(weights.to(v.dtype), v)  # (B, nh, T, hd)

    def make_cache(self, *, static: bool = False) -> KVCache:
        """An empty cache for incremental decoding (``static=True`` for cross-attention)."""
        return KVCache(static=static)

    @torch.no_grad()
    def load_torch_weights(self, reference: nn.MultiheadAttention) -> None:
        """Copy the projection weights of a ``torch.nn.MultiheadAttention`` (for parity tests).

        The reference must have the same ``embed_dim`` and ``num_heads`` (and ``kdim == vdim ==
        context_dim`` for cross-attention).
        """
        if reference.embed_dim != self.embed_dim or reference.num_heads != self.num_heads:
            raise ValueError(
                f"reference: expected embed_dim {self.embed_dim}, num_heads {self.num_heads}, "
                f"received {reference.embed_dim}, {reference.num_heads}"
            )
        if reference.in_proj_weight is not None:
            weights = reference.in_proj_weight.chunk(3, dim=0)  # 3 x (D, D)
        else:
            weights = (reference.q_proj_weight, reference.k_proj_weight, reference.v_proj_weight)
        for proj, weight in zip((self.q_proj, self.k_proj, self.v_proj), weights):
            check_shape("reference projection", weight, tuple(proj.weight.shape))
            proj.weight.copy_(weight)
        if reference.in_proj_bias is not None:
            for proj, bias in zip((self.q_proj, self.k_proj, self.v_proj), reference.in_proj_bias.chunk(3)):
                proj.bias.copy_(bias)
        self.out_proj.weight.copy_(reference.out_proj.weight)
        if reference.out_proj.bias is not None:
            self.out_proj.bias.copy_(reference.out_proj.bias)
