"""Linear (kernelized) attention: Katharopoulos et al. 2020, "Transformers are RNNs".

Softmax attention costs ``O(T S D)`` time and ``O(T S)`` memory per head because every query
meets every key. Replacing ``exp(q.k)`` by a kernel ``phi(q).phi(k)`` with the feature map
``phi(x) = elu(x) + 1`` lets the sums be reordered::

    out_t = phi(q_t)^T (sum_s phi(k_s) v_s^T) / phi(q_t)^T (sum_s phi(k_s))

so the non-causal case costs ``O((T + S) hd^2)`` per head. The causal case uses prefix sums:
computed per chunk of ``chunk_size`` positions (exact, quadratic only inside a chunk) so memory
stays ``O(T hd + (T / chunk) hd^2)`` rather than ``O(T hd^2)``. At decoding time the prefix sums
are a constant-size recurrent state (:class:`~multiattn.attention.cache.LinearAttentionState`).

Paths: with nothing recording, the reordered sums above; when recording, the normalised kernel
weights ``(B, nh, T, S)`` are computed explicitly, emitted with axes ``("batch", "head", "query",
"key")`` and applied (same outputs). A full ``(B, T, S)`` mask, or causal attention with
``S != T`` outside a cache, has no reordered form and always takes the explicit path.

Key padding: masked keys' features are zeroed, so they add nothing to either sum; a query with
no valid key gets a zero output.

Dropout: there are no weights to drop in the fast path, so ``dropout`` applies to the attended
values (before ``out_proj``), identically in both paths.

Shape legend: ``B`` batch, ``T`` query length, ``S`` key length, ``D`` embed_dim, ``Dc`` context
dim, ``nh`` num_heads, ``hd`` head_dim, ``n`` chunks, ``C`` chunk_size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from multiattn.attention.cache import KVCache, LinearAttentionState
from multiattn.attention.multihead import AXES, ProjectedAttention, merge_heads, resolve_source, split_heads
from multiattn.masks import build_attention_mask
from multiattn.recording import emit, is_recording

__all__ = ["LinearAttention", "elu_feature_map"]


def elu_feature_map(x: Tensor) -> Tensor:
    """``phi(x) = elu(x) + 1``: positive, so the kernel normaliser never vanishes on valid keys."""
    return F.elu(x) + 1.0


class LinearAttention(ProjectedAttention):
    """Multi-head linear attention with the ``elu + 1`` feature map (Katharopoulos et al. 2020).

    Same constructor and forward as :class:`~multiattn.attention.multihead.MultiHeadAttention`.
    Caches: self-attention uses a :class:`LinearAttentionState` (recurrent state), cross-attention
    a static :class:`KVCache` holding the memory's key features and values.

    Args:
        embed_dim: ``D``.
        num_heads: ``nh``; must divide ``embed_dim``.
        context_dim: ``Dc`` (default ``embed_dim``).
        dropout: dropout on the attended values (training only).
        bias: bias in the projections.
        chunk_size: ``C``, positions per chunk in the causal prefix sums.
        eps: floor of the normaliser (reached only by queries with no valid key).
    """

    def __init__(
        self, embed_dim: int, num_heads: int, *, chunk_size: int = 64, eps: float = 1e-6, **projections: Any
    ) -> None:
        super().__init__(embed_dim, num_heads, **projections)  # context_dim, dropout, bias
        self.chunk_size = chunk_size
        self.eps = eps

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | LinearAttentionState | None = None,
    ) -> Tensor:
        """Attend from ``x`` to ``context`` (or to ``x`` itself).

        Args:
            x: ``(B, T, D)`` queries.
            context: ``(B, S, Dc)`` or ``None`` for self-attention.
            mask: bool, ``True`` = may attend; ``(B, S)`` key padding or ``(B, T, S)``; ``S``
                counts keys already folded into a cache.
            is_causal: query ``t`` sees keys ``<= t + (S - T)``.
            cache: :class:`LinearAttentionState` (self-attention) or static :class:`KVCache`
                (cross-attention).

        Returns:
            ``(B, T, D)``.
        """
        if isinstance(cache, KVCache) and not cache.static:
            raise ValueError(
                "cache: LinearAttention self-attention needs a LinearAttentionState, not a KVCache"
            )
        if isinstance(cache, LinearAttentionState) and context is not None:
            raise ValueError("cache: a LinearAttentionState is for self-attention; use KVCache(static=True)")
        source = resolve_source(x, context, cache, embed_dim=self.embed_dim, context_dim=self.context_dim)
        batch, query_len, _ = x.shape
        phi_q = elu_feature_map(split_heads(self.q_proj(x), self.num_heads))  # (B, nh, T, hd)
        if source is None:
            phi_k, v = cache.key, cache.value  # (B, nh, S, hd)
        else:
            phi_k = elu_feature_map(split_heads(self.k_proj(source), self.num_heads))  # (B, nh, S_new, hd)
            v = split_heads(self.v_proj(source), self.num_heads)  # (B, nh, S_new, hd)
            if isinstance(cache, KVCache):
                phi_k, v = cache.append(phi_k, v)
        past = cache.length if isinstance(cache, LinearAttentionState) else 0
        if isinstance(cache, LinearAttentionState) and cache.filled and cache.kv.shape[0] != batch:
            raise ValueError(
                f"cache: expected batch {batch}, received state of shape {tuple(cache.kv.shape)}"
            )
        new_len = phi_k.shape[2]
        key_len = past + new_len
        attn_mask = build_attention_mask(
            query_len, key_len, mask=mask, is_causal=is_causal, batch=batch, device=x.device
        )  # (B or 1, 1, T, S) or None
        if mask is not None and mask.dim() == 2:
            # Zero masked keys' features: they then add nothing to any sum (the columns of keys
            # already in a recurrent state were applied when those keys arrived).
            phi_k = phi_k * mask[:, None, -new_len:, None].to(phi_k.dtype)  # (B, nh, S_new, hd)

        explicit = is_recording() or (mask is not None and mask.dim() == 3)
        explicit = explicit or (is_causal and query_len != new_len)
        if explicit:
            keys, values = phi_k, v
            if isinstance(cache, LinearAttentionState):
                keys, values = self._with_history(cache, phi_k, v)  # (B, nh, S, hd)
            out = self._explicit(phi_q, keys, values, attn_mask)
            if isinstance(cache, LinearAttentionState):
                self._fold(cache, phi_k, v)
        elif is_causal:
            out = self._causal(phi_q, phi_k, v, cache)
        else:
            out = self._global(phi_q, phi_k, v, cache)
        out = F.dropout(out, p=self.dropout, training=self.training)
        return self.out_proj(merge_heads(out))

    def make_cache(self, *, static: bool = False) -> KVCache | LinearAttentionState:
        """An empty cache: a recurrent state for self-attention, a static KVCache for cross-attention."""
        return KVCache(static=True) if static else LinearAttentionState()

    # -- paths -------------------------------------------------------------------------------

    def _explicit(self, phi_q: Tensor, phi_k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        kernel = torch.matmul(phi_q, phi_k.transpose(-2, -1))  # (B, nh, T, S)
        if attn_mask is not None:
            kernel = kernel.masked_fill(~attn_mask, 0.0)
        weights = kernel / kernel.sum(dim=-1, keepdim=True).clamp_min(self.eps)  # (B, nh, T, S)
        emit(self, weights, axes=AXES)
        return torch.matmul(weights.to(v.dtype), v)  # (B, nh, T, hd)

    def _global(self, phi_q: Tensor, phi_k: Tensor, v: Tensor, cache: LinearAttentionState | None) -> Tensor:
        if isinstance(cache, LinearAttentionState):
            kv, k_sum = self._fold(cache, phi_k, v)  # everything cached so far plus the new keys
        else:
            kv = torch.einsum("bhsd,bhse->bhde", phi_k, v)  # (B, nh, hd, hd)
            k_sum = phi_k.sum(dim=2)  # (B, nh, hd)
        return self._normalise(phi_q, kv.to(phi_q.dtype), k_sum.to(phi_q.dtype))

    def _normalise(self, phi_q: Tensor, kv: Tensor, k_sum: Tensor) -> Tensor:
        numerator = torch.einsum("bhtd,bhde->bhte", phi_q, kv)  # (B, nh, T, hd)
        denominator = torch.einsum("bhtd,bhd->bht", phi_q, k_sum)  # (B, nh, T)
        return numerator / denominator.clamp_min(self.eps).unsqueeze(-1).to(numerator.dtype)

    def _causal(self, phi_q: Tensor, phi_k: Tensor, v: Tensor, cache: LinearAttentionState | None) -> Tensor:
        batch, heads, length, head_dim = phi_q.shape
        chunk = min(self.chunk_size, length)
        num_chunks = -(-length // chunk)
        pad = num_chunks * chunk - length
        if pad:
            # Zero keys add nothing; padded queries are cut off below.
            phi_q, phi_k, v = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, v))  # (B, nh, n*C, hd)
        shape = (batch, heads, num_chunks, chunk, head_dim)
        qc, kc, vc = phi_q.view(shape), phi_k.view(shape), v.view(shape)  # (B, nh, n, C, hd)
        kv_chunk = torch.einsum("bhncd,bhnce->bhnde", kc, vc).float()  # (B, nh, n, hd, hd)
        k_chunk = kc.sum(dim=3).float()  # (B, nh, n, hd)
        # State before each chunk: an exclusive prefix sum over chunks, plus the cached past.
        kv_before = kv_chunk.cumsum(dim=2) - kv_chunk  # (B, nh, n, hd, hd)
        k_before = k_chunk.cumsum(dim=2) - k_chunk  # (B, nh, n, hd)
        if cache is not None and cache.filled:
            kv_before = kv_before + cache.kv[:, :, None]
            k_before = k_before + cache.k_sum[:, :, None]
        dtype = qc.dtype
        numerator = torch.einsum("bhncd,bhnde->bhnce", qc, kv_before.to(dtype))  # (B, nh, n, C, hd)
        denominator = torch.einsum("bhncd,bhnd->bhnc", qc, k_before.to(dtype))  # (B, nh, n, C)
        within = torch.matmul(qc, kc.transpose(-2, -1))  # (B, nh, n, C, C)
        within = within * torch.ones(chunk, chunk, dtype=torch.bool, device=qc.device).tril().to(within.dtype)
        numerator = numerator + torch.matmul(within.to(vc.dtype), vc)
        denominator = denominator + within.sum(dim=-1).to(denominator.dtype)
        out = numerator / denominator.clamp_min(self.eps).unsqueeze(-1).to(numerator.dtype)
        out = out.reshape(batch, heads, num_chunks * chunk, head_dim)[:, :, :length]  # (B, nh, T, hd)
        if cache is not None:
            self._fold_sums(cache, kv_chunk.sum(dim=2), k_chunk.sum(dim=2), length)
        return out

    # -- recurrent state ---------------------------------------------------------------------

    def _fold(self, cache: LinearAttentionState, phi_k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        kv = torch.einsum("bhsd,bhse->bhde", phi_k, v).float()  # (B, nh, hd, hd)
        return self._fold_sums(cache, kv, phi_k.sum(dim=2).float(), phi_k.shape[2])

    @staticmethod
    def _fold_sums(
        cache: LinearAttentionState, kv: Tensor, k_sum: Tensor, count: int
    ) -> tuple[Tensor, Tensor]:
        if cache.filled:
            kv, k_sum = cache.kv + kv, cache.k_sum + k_sum
        cache.kv, cache.k_sum, cache.length = kv, k_sum, cache.length + count
        return kv, k_sum

    @staticmethod
    def _with_history(cache: LinearAttentionState, phi_k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Keys seen so far plus the new ones, stored in the cache (explicit weights need all keys)."""
        if cache.history_length != cache.length:
            raise ValueError(
                "cache: recording LinearAttention with a LinearAttentionState needs every key, but "
                f"{cache.length - cache.history_length} were folded before recording started; "
                "record from the first decoding step"
            )
        if cache.key_features is not None:
            phi_k = torch.cat([cache.key_features, phi_k], dim=2)  # (B, nh, S_past + S_new, hd)
            v = torch.cat([cache.values, v], dim=2)  # (B, nh, S_past + S_new, hd)
        cache.key_features, cache.values, cache.history_length = phi_k, v, phi_k.shape[2]
        return phi_k, v
