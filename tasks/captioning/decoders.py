"""Caption decoders that attend over an image grid at every word.

- :class:`ShowAttendTellDecoder`: the LSTM of Show, Attend and Tell (Xu et al. 2015) with the
  core's :class:`~multiattn.attention.spatial.SoftSpatialAttention` (gating scalar beta, doubly
  stochastic penalty), initial state from the mean annotation (eq. 5) and the deep output layer
  ``p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))`` (eq. 7).
- :class:`TransformerCaptionDecoder`: the core's :class:`~multiattn.token_decoder.TokenDecoder`
  (Vaswani et al. 2017) with cross-attention over the grid, which gets 2-d sinusoidal positions
  (:func:`~multiattn.positional.sinusoidal_2d`) so the heads can tell cells apart.

Both share one surface: ``forward(features, tokens, lengths) -> (logits, attention)`` for
teacher-forced training, and ``init_state(features)`` / ``step(tokens, state)`` for the core's
searches. Per-word attention is ``(.., H, W)`` over the grid (transformer: the cross-attention of
``alignment_layer``, averaged over heads).

Decoding (``step`` without autograd) runs the LSTM decoder on weights folded once per weight
version (:mod:`multiattn.tasks.captioning.fused_step`): what depends only on the previous word comes from a table,
and projections of the same input are one matmul. Training (``forward``) keeps ``nn.LSTMCell``.

Shape legend: ``B`` batch (or hypotheses), ``T`` target steps, ``C`` feature channels,
``H, W`` grid, ``N = H*W`` cells, ``D`` or ``E`` embed dim, ``Dh`` LSTM hidden size, ``V``
vocabulary, ``A`` attention dim, ``G = 4*Dh`` LSTM gates, ``O`` deep-output width (``V`` when the
output layers are composed, else ``E``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from multiattn.attention.spatial import SoftSpatialAttention, SpatialAttentionOutput, flatten_grid
from multiattn.decoding import ItemMemory
from multiattn.positional import sinusoidal_2d
from multiattn.recurrent import teacher_force
from multiattn.tasks.captioning.fused_step import FoldedStepWeights, fold, folded_advance
from multiattn.token_decoder import TokenDecoder

__all__ = [
    "GridMemory",
    "ShowAttendTellDecoder",
    "TransformerCaptionDecoder",
]


class GridMemory(ItemMemory):
    """An image's grid and its attention projection, shared by all hypotheses of that image
    (the core's :class:`~multiattn.decoding.ItemMemory` with named fields).

    Args:
        features: ``(B, N, C)`` per-image grid.
        features_proj: ``(B, N, A)`` its attention projection.
    """

    def __init__(self, features: Tensor, features_proj: Tensor) -> None:
        super().__init__(features, features_proj)

    @property
    def features(self) -> Tensor:
        return self.shared()[0]  # (G, N, C): one grid per group of rows of one image

    @property
    def features_proj(self) -> Tensor:
        return self.shared()[1]  # (G, N, A)


class ShowAttendTellDecoder(nn.Module):
    """LSTM decoder with soft spatial attention (Xu et al. 2015, "Show, Attend and Tell").

    Args:
        vocab_size: ``V``.
        feature_dim: ``C``, channels of the encoder grid.
        embed_dim: word embedding size (also the deep-output size).
        hidden_dim: ``Dh``.
        attn_dim: hidden size of the attention MLP.
        dropout: dropout before the output layer.
        gate: use the gating scalar beta.
        init: the LSTM's initial state: ``mean`` (eq. 5, a projection of the mean annotation: the
            decoder sees the whole image before it attends) or ``learned`` (one learned state for
            every image: all it knows about the image comes through attention).
        attend: where in the step the grid is read. ``before`` (the paper's): the query is
            ``h_{t-1}``, the context ``z_t`` enters the LSTM with the previous word and the deep
            output. ``after`` (the order of Luong et al. 2015 and of Lu et al. 2017's spatial
            attention): the LSTM first reads the previous word and the previous context
            (``z_0 = 0``), then ``h_t``, which knows the word just emitted, is the query, and
            ``z_t`` enters only the deep output. The parameters are the same shapes in both.
        query_word: add a projection of the previous word's embedding to the attention query
            (``W_a h + W_w E y_{t-1}``), so that the map is chosen knowing the word just emitted
            without the LSTM having read it yet.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        attn_dim: int = 128,
        dropout: float = 0.3,
        gate: bool = True,
        init: str = "mean",
        attend: str = "before",
        query_word: bool = False,
    ) -> None:
        super().__init__()
        if init not in ("mean", "learned"):
            raise ValueError(f"init: expected mean or learned, received {init!r}")
        if attend not in ("before", "after"):
            raise ValueError(f"attend: expected before or after, received {attend!r}")
        self.vocab_size = vocab_size
        self.init = init
        self.attend = attend
        # (E -> A) the previous word's share of the attention query, or None
        self.word_query = nn.Linear(embed_dim, attn_dim, bias=False) if query_word else None
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.attention = SoftSpatialAttention(
            feature_dim=feature_dim, hidden_dim=hidden_dim, attn_dim=attn_dim, gate=gate
        )
        if init == "mean":
            self.init_h = nn.Linear(feature_dim, hidden_dim)
            self.init_c = nn.Linear(feature_dim, hidden_dim)
        else:  # (2, Dh) the (h, c) start state before tanh
            self.start = nn.Parameter(torch.zeros(2, hidden_dim))
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.out_hidden = nn.Linear(hidden_dim, embed_dim)
        self.out_context = nn.Linear(feature_dim, embed_dim)
        self.out = nn.Linear(embed_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)
        # (key, FoldedStepWeights): not a buffer (not saved); rebuilt when any parameter changes.
        self._folded: tuple[tuple, FoldedStepWeights] | None = None

    def init_state(self, features: Tensor) -> dict[str, Any]:
        """``features (B, C, H, W)`` -> the decoding state (hypothesis dimension first everywhere).

        The first eval-mode :meth:`step` adds ``"folded"``: the search's :class:`FoldedStepWeights`.
        """
        flat, (height, width) = flatten_grid(features)  # (B, N, C)
        projected = self.attention.precompute(flat, grid_hw=(height, width))  # (B, N, A)
        if self.init == "mean":
            mean = flat.mean(dim=1)  # (B, C)
            h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))
        else:
            start = torch.tanh(self.start).to(flat.dtype)  # (2, Dh)
            h, c = (s.expand(flat.shape[0], -1) for s in start)  # (B, Dh) each
        state = {"memory": GridMemory(flat, projected), "h": h, "c": c, "grid": (height, width)}
        if self.attend == "after":  # the context fed to the first step's LSTM: none yet
            state["context"] = flat.new_zeros(flat.shape[0], flat.shape[2])  # (B, C)
        return state

    def _advance(self, previous: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """Consume ``previous`` tokens ``(B,)``: attend with ``h_{t-1}``, update the LSTM, score the next word
        (``attend="after"``: update the LSTM, attend with ``h_t``, score)."""
        embedded = self.embedding(previous)  # (B, E)
        memory = state["memory"]
        word = None if self.word_query is None else self.word_query(embedded)  # (B, A)

        def attend(query: Tensor) -> SpatialAttentionOutput:
            return self.attention(
                memory.features,
                query,
                grid_hw=state["grid"],
                features_proj=memory.features_proj,
                query_bias=word,
            )

        if self.attend == "after":
            h, c = self.cell(torch.cat([embedded, state["context"]], dim=-1), (state["h"], state["c"]))
            attended = attend(h)
            state = {**state, "context": attended.context}
        else:
            attended = attend(state["h"])
            h, c = self.cell(torch.cat([embedded, attended.context], dim=-1), (state["h"], state["c"]))
        logits = self.out(self.dropout(embedded + self.out_hidden(h) + self.out_context(attended.context)))
        return logits, {**state, "h": h, "c": c}, attended.weights  # (B, V), state, (B, H, W)

    def forward(self, features: Tensor, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced decoding.

        Args:
            features: ``(B, C, H, W)``.
            tokens: ``(B, T)`` input tokens (``<bos> w1 .. w_{T-1}``, padded).
            lengths: ``(B,)`` valid input steps (unused by the recurrence: padded steps come after
                the valid ones and their outputs are masked in the loss).

        Returns:
            ``(logits (B, T, V), attention (B, T, H, W))``.
        """

        def advance(token: Tensor, state: dict[str, Any]) -> tuple[tuple[Tensor, Tensor], dict[str, Any]]:
            logits, state, weights = self._advance(token, state)
            return (logits, weights), state

        logits, weights = teacher_force(advance, tokens, self.init_state(features))
        return logits, weights  # (B, T, V), (B, T, H, W)

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """One search step: ``tokens (B, t)`` so far -> ``(log_probs (B, V), state, attention (B, H, W))``.

        In eval mode without autograd it runs on :meth:`folded_weights` (same values as
        :meth:`_advance` up to float rounding), looked up at a search's first step and kept in
        ``state["folded"]`` for the rest (the cache check is a comparison of parameter versions);
        otherwise, and always with ``attend="after"`` (whose order the folding does not cover), it
        is :meth:`_advance`.
        """
        if self.training or torch.is_grad_enabled() or self.attend == "after":
            logits, state, weights = self._advance(tokens[:, -1], state)
        else:
            folded = state.get("folded")
            if folded is None:
                folded = self.folded_weights()
                state = {**state, "folded": folded}
            logits, state, weights = folded_advance(self, tokens[:, -1], state, folded)
        return torch.log_softmax(logits.float(), dim=-1), state, weights

    def folded_weights(self) -> FoldedStepWeights:
        """The :class:`FoldedStepWeights` of the current parameters, cached.

        The cache key is every parameter's identity, storage address and version counter (bumped
        by in-place updates: optimizer steps, ``load_state_dict``), so it is rebuilt after the
        weights change and once per model at inference. Writes through ``param.data`` bypass the
        version counter: call :meth:`clear_folded_weights` after those.
        """
        params = list(self.parameters())
        if any(p.is_inference() for p in params):  # no version counter: fold on every call
            return fold(self)
        key = tuple((id(p), p.data_ptr(), p._version, p.dtype) for p in params)
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, fold(self))
        return self._folded[1]

    def clear_folded_weights(self) -> None:
        """Drop the cached :class:`FoldedStepWeights` (rebuilt on the next decoding step)."""
        self._folded = None


class TransformerCaptionDecoder(TokenDecoder):
    """The core's :class:`~multiattn.token_decoder.TokenDecoder` over the feature grid.

    The grid is projected to ``D`` and given 2-d sinusoidal positions to form the memory; the
    per-word attention is the token decoder's alignment reshaped to the grid.

    Args:
        feature_dim: ``C``.
        **decoder: the token decoder's arguments (``vocab_size``, ``embed_dim``, ``num_heads``,
            ``num_layers``, ``ff_dim``, ``dropout``, ``max_len`` = longest caption,
            ``alignment_layer``); ``padding_idx`` is the vocabulary's ``<pad>``, 0.
    """

    def __init__(self, *, feature_dim: int, **decoder: Any) -> None:
        super().__init__(padding_idx=0, **decoder)
        self.memory_proj = nn.Linear(feature_dim, self.embed_dim)

    def memory(self, features: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``(B, C, H, W)`` -> ``((B, N, D) memory with 2-d positions, (H, W))``."""
        flat, (height, width) = flatten_grid(features)  # (B, N, C)
        positions = sinusoidal_2d(height, width, self.embed_dim).to(device=flat.device, dtype=flat.dtype)
        return self.memory_proj(flat) + positions, (height, width)  # (B, N, D)

    def forward(
        self, features: Tensor, tokens: Tensor, lengths: Tensor, *, with_attention: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding (all steps at once).

        Args:
            features: ``(B, C, H, W)``.
            tokens: ``(B, T)`` input tokens, padded.
            lengths: ``(B,)`` valid input steps.
            with_attention: also return the per-step grid attention (explicit, slower path).

        Returns:
            ``(logits (B, T, V), attention (B, T, H, W) or None)``.
        """
        memory, grid = self.memory(features)
        logits, alignment = self.decode(tokens, memory, tgt_lengths=lengths, with_alignment=with_attention)
        if alignment is None:
            return logits, None
        return logits, alignment.view(*alignment.shape[:2], *grid)  # (B, T, N) -> (B, T, H, W)

    def init_state(self, features: Tensor) -> dict[str, Any]:
        """Project the memory once into the decoder's reorderable cache."""
        memory, grid = self.memory(features)
        return {"cache": self.init_cache(memory), "grid": grid}

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """One search step: ``tokens (B, t)`` -> ``(log_probs (B, V), state, attention (B, H, W))``."""
        log_probs, alignment = self.decode_step(tokens, state["cache"], with_alignment=True)
        assert alignment is not None
        return log_probs, state, alignment.view(alignment.shape[0], *state["grid"])  # (B, H, W)
