"""Caption decoders that attend over an image grid at every word.

- :class:`ShowAttendTellDecoder`: the LSTM of Show, Attend and Tell (Xu et al. 2015) with the
  core's :class:`~multiattn.attention.spatial.SoftSpatialAttention` (gating scalar beta, doubly
  stochastic penalty), initial state from the mean annotation (eq. 5) and the deep output layer
  ``p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))`` (eq. 7).
- :class:`TransformerCaptionDecoder`: the core's pre-norm :class:`~multiattn.transformer.TransformerDecoder`
  (Vaswani et al. 2017) with cross-attention over the grid, which gets 2-d sinusoidal positions
  (:func:`~multiattn.positional.sinusoidal_2d`) so the heads can tell cells apart.

Both share one surface: ``forward(features, tokens, lengths) -> (logits, attention)`` for
teacher-forced training, and ``init_state(features)`` / ``step(tokens, state)`` for the core's
searches. Per-word attention is ``(.., H, W)`` over the grid (transformer: the cross-attention of
``attention_layer``, averaged over heads).

Decoding (``step`` without autograd) runs the LSTM decoder on weights folded once per weight
version (:class:`FoldedStepWeights`): what depends only on the previous word comes from a table,
and projections of the same input are one matmul. Training (``forward``) keeps ``nn.LSTMCell``.

Shape legend: ``B`` batch (or hypotheses), ``T`` target steps, ``C`` feature channels,
``H, W`` grid, ``N = H*W`` cells, ``D`` or ``E`` embed dim, ``Dh`` LSTM hidden size, ``V``
vocabulary, ``A`` attention dim, ``G = 4*Dh`` LSTM gates, ``O`` deep-output width (``V`` when the
output layers are composed, else ``E``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from multiattn.attention.spatial import SoftSpatialAttention, flatten_grid
from multiattn.decoding import ItemMemory
from multiattn.positional import SinusoidalPositionalEncoding, sinusoidal_2d
from multiattn.recording import record_attention
from multiattn.transformer import TransformerDecoder

__all__ = [
    "FoldedStepWeights",
    "GridMemory",
    "ShowAttendTellDecoder",
    "TransformerCaptionDecoder",
    "DECODERS",
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


# Largest vocabulary whose embedding share of the LSTM gates decoding looks up in a (V, G) table.
# A table row replaces one (G x E) product per decoded row; building it costs V of them once per
# weight version (once per model at inference, per validation in training): at V <= 1024 it pays
# for itself within 1024 decoded rows (three steps of a 64-image beam-5 search) and is <= 5 MB at
# Dh = 256. A 10k-word (COCO-size) vocabulary costs more than a short search saves, and 40 MB.
TOKEN_TABLE_MAX_VOCAB = 1024


class FoldedStepWeights:
    """The decoder's weights rearranged for one decoding step without autograd.

    A step computes ``gates = W_ie E[y] + W_ic z + W_hh h + b`` (the LSTM, ``z`` the context),
    attention's ``W_a h`` and ``f_beta(h)``, and the deep output ``L_o(E[y] + L_h h_t + L_z z)``.
    Folded:

    - ``hidden``: ``[W_hh; W_a; w_beta]``, one matmul of ``h_{t-1}``;
    - ``context``: ``[W_ic; L_z]`` (or ``[W_ic; L_o L_z]``), one matmul of ``z``;
    - ``token_table``: ``[W_ie E + b; E + b_h + b_z]`` per word (or ``L_o(E + ..) + b_o`` when
      composed), so the embedding's products become a row lookup (``V <= TOKEN_TABLE_MAX_VOCAB``);
    - ``composed``: when ``V (Dh + C) < E (Dh + C) + V E`` the output layer is folded into
      ``L_h`` and ``L_z`` (all linear; dropout is off in eval), so the step never forms the
      ``E``-wide deep output.

    The rows of the cell gate ``g`` are doubled (exact in floating point), so one ``sigmoid``
    over all gates gives ``tanh(g) = 2 sigmoid(2 g) - 1`` too: on CPUs float32 ``tanh`` costs
    several times ``sigmoid`` per element (see :func:`multiattn.attention.additive.additive_energy`).
    """

    def __init__(self, decoder: ShowAttendTellDecoder) -> None:
        cell, attention = decoder.cell, decoder.attention
        embed_dim, hidden_dim = decoder.embedding.embedding_dim, cell.hidden_size
        vocab_size, feature_dim = decoder.vocab_size, attention.feature_dim
        gates = 4 * hidden_dim
        # (G,) doubles the cell gate's rows (order i, f, g, o as nn.LSTMCell)
        scale = torch.ones(gates, dtype=cell.weight_ih.dtype, device=cell.weight_ih.device)
        scale[2 * hidden_dim : 3 * hidden_dim] = 2.0
        weight_ih = cell.weight_ih * scale[:, None]  # (G, E + C)
        gate_bias = (cell.bias_ih + cell.bias_hh) * scale  # (G,)
        out_bias = decoder.out_hidden.bias + decoder.out_context.bias  # (E,)
        self.use_table = vocab_size <= TOKEN_TABLE_MAX_VOCAB
        self.composed = self.use_table and vocab_size * (hidden_dim + feature_dim) < embed_dim * (
            hidden_dim + feature_dim + vocab_size
        )
        self.gates, self.attn_dim = gates, attention.attn_dim
        hidden_rows = [cell.weight_hh * scale[:, None], attention.hidden_proj.weight]
        hidden_bias = [torch.zeros_like(gate_bias), gate_bias.new_zeros(attention.attn_dim)]
        if attention.gate_proj is not None:
            hidden_rows.append(attention.gate_proj.weight)
            hidden_bias.append(attention.gate_proj.bias)
        self.hidden_weight = torch.cat(hidden_rows).t()  # (Dh, G + A [+ 1])
        self.hidden_bias = torch.cat(hidden_bias)  # (G + A [+ 1],)
        out_weight, out_bias_term = decoder.out.weight, decoder.out.bias  # (V, E), (V,)
        context_out = decoder.out_context.weight  # (E, C)
        self.output_hidden = decoder.out_hidden.weight  # (E, Dh)
        if self.composed:
            context_out = out_weight @ context_out  # (V, C)
            self.output_hidden = out_weight @ self.output_hidden  # (V, Dh)
        self.output_hidden = self.output_hidden.t()  # (Dh, O)
        self.context_weight = torch.cat([weight_ih[:, embed_dim:], context_out]).t()  # (C, G + O)
        self.token_gates = None  # (E, G) without a table
        if self.use_table:
            embeddings = decoder.embedding.weight  # (V, E)
            token_out = embeddings + out_bias  # (V, E)
            if self.composed:
                token_out = nn.functional.linear(token_out, out_weight, out_bias_term)  # (V, V)
            token_gates = nn.functional.linear(embeddings, weight_ih[:, :embed_dim], gate_bias)  # (V, G)
            self.token_table = torch.cat([token_gates, token_out], dim=1)  # (V, G + O)
            self.context_bias = torch.zeros_like(self.context_weight[0])  # (G + O,)
        else:
            self.token_table, self.token_gates = None, weight_ih[:, :embed_dim].t()  # -, (E, G)
            self.context_bias = torch.cat([gate_bias, out_bias])  # (G + E,)


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
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.attention = SoftSpatialAttention(
            feature_dim=feature_dim, hidden_dim=hidden_dim, attn_dim=attn_dim, gate=gate
        )
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
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
        mean = flat.mean(dim=1)  # (B, C)
        projected = self.attention.precompute(flat, grid_hw=(height, width))  # (B, N, A)
        return {
            "memory": GridMemory(flat, projected),
            "h": torch.tanh(self.init_h(mean)),
            "c": torch.tanh(self.init_c(mean)),
            "grid": (height, width),
        }

    def _advance(self, previous: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """Consume ``previous`` tokens ``(B,)``: attend with ``h_{t-1}``, update the LSTM, score the next word."""
        embedded = self.embedding(previous)  # (B, E)
        memory = state["memory"]
        attended = self.attention(
            memory.features, state["h"], grid_hw=state["grid"], features_proj=memory.features_proj
        )
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
        state = self.init_state(features)
        logits, weights = [], []
        for step in range(tokens.shape[1]):
            step_logits, state, step_weights = self._advance(tokens[:, step], state)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)  # (B, T, V), (B, T, H, W)

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """One search step: ``tokens (B, t)`` so far -> ``(log_probs (B, V), state, attention (B, H, W))``.

        In eval mode without autograd it runs on :meth:`folded_weights` (same values as
        :meth:`_advance` up to float rounding), looked up at a search's first step and kept in
        ``state["folded"]`` for the rest (the cache check is a comparison of parameter versions);
        otherwise it is :meth:`_advance`.
        """
        if self.training or torch.is_grad_enabled():
            logits, state, weights = self._advance(tokens[:, -1], state)
        else:
            folded = state.get("folded")
            if folded is None:
                folded = self.folded_weights()
                state = {**state, "folded": folded}
            logits, state, weights = self._folded_advance(tokens[:, -1], state, folded)
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
            return self._fold()
        key = tuple((id(p), p.data_ptr(), p._version, p.dtype) for p in params)
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, self._fold())
        return self._folded[1]

    def clear_folded_weights(self) -> None:
        """Drop the cached :class:`FoldedStepWeights` (rebuilt on the next decoding step)."""
        self._folded = None

    def _fold(self) -> FoldedStepWeights:
        # normal (not inference) tensors, outside autocast: the cache outlives this call's modes
        device_type = self.cell.weight_ih.device.type
        with torch.inference_mode(False), torch.no_grad(), torch.autocast(device_type, enabled=False):
            return FoldedStepWeights(self)

    def _folded_advance(
        self, previous: Tensor, state: dict[str, Any], folded: FoldedStepWeights
    ) -> tuple[Tensor, dict[str, Any], Tensor]:
        """:meth:`_advance` in eval mode on ``folded`` weights: 3 matmuls and a table lookup per step."""
        gates, attn_dim = folded.gates, folded.attn_dim
        memory = state["memory"]
        by_hidden = torch.addmm(folded.hidden_bias, state["h"], folded.hidden_weight)  # (B, G + A [+ 1])
        attended = self.attention(
            memory.features,
            state["h"],
            grid_hw=state["grid"],
            features_proj=memory.features_proj,
            hidden_proj=by_hidden[:, gates : gates + attn_dim],
            gate_logit=by_hidden[:, gates + attn_dim :] if self.attention.gate_proj is not None else None,
        )
        by_context = torch.addmm(folded.context_bias, attended.context, folded.context_weight)  # (B, G + O)
        if folded.token_table is not None:
            by_token = folded.token_table.index_select(0, previous)  # (B, G + O)
            pre_gates = torch.add(by_token[:, :gates], by_context[:, :gates])  # (B, G)
            deep = torch.add(by_token[:, gates:], by_context[:, gates:])  # (B, O)
        else:
            embedded = self.embedding(previous)  # (B, E)
            pre_gates = torch.addmm(by_context[:, :gates], embedded, folded.token_gates)  # (B, G)
            deep = torch.add(embedded, by_context[:, gates:])  # (B, E)
        activated = pre_gates.add_(by_hidden[:, :gates]).sigmoid_()  # (B, G): i, f, sigmoid(2g), o
        in_gate, forget_gate, cell_gate, out_gate = activated.chunk(4, dim=1)  # 4 x (B, Dh)
        cell_gate = cell_gate.mul_(2.0).sub_(1.0)  # tanh(g) = 2 sigmoid(2g) - 1
        c = torch.addcmul(forget_gate * state["c"], in_gate, cell_gate)  # (B, Dh)
        h = out_gate * torch.sigmoid(c * 2.0).mul_(2.0).sub_(1.0)  # o * tanh(c)
        logits = torch.addmm(deep, h, folded.output_hidden)  # (B, O)
        if not folded.composed:
            logits = self.out(logits)  # (B, E) -> (B, V)
        return logits, {**state, "h": h, "c": c}, attended.weights  # (B, V), state, (B, H, W)


class TransformerCaptionDecoder(nn.Module):
    """Transformer decoder with cross-attention over the feature grid.

    Args:
        vocab_size: ``V``.
        feature_dim: ``C``.
        embed_dim: ``D``.
        num_heads: attention heads.
        num_layers: decoder layers.
        ff_dim: feed-forward size.
        dropout: dropout.
        max_len: longest caption (positions) it can decode.
        attention_layer: which layer's cross-attention is the per-word map (``-1`` = last).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 256,
        num_heads: int = 4,
        num_layers: int = 3,
        ff_dim: int = 1024,
        dropout: float = 0.1,
        max_len: int = 64,
        attention_layer: int = -1,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.attention_layer = attention_layer % num_layers
        self.memory_proj = nn.Linear(feature_dim, embed_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.positions = SinusoidalPositionalEncoding(embed_dim, max_len, dropout=dropout)
        self.decoder = TransformerDecoder(
            embed_dim=embed_dim, num_heads=num_heads, num_layers=num_layers, ff_dim=ff_dim, dropout=dropout
        )
        self.out = nn.Linear(embed_dim, vocab_size)

    def memory(self, features: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``(B, C, H, W)`` -> ``((B, N, D) memory with 2-d positions, (H, W))``."""
        flat, (height, width) = flatten_grid(features)  # (B, N, C)
        positions = sinusoidal_2d(height, width, self.embed_dim).to(device=flat.device, dtype=flat.dtype)
        return self.memory_proj(flat) + positions, (height, width)  # (B, N, D)

    def _embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        return self.positions(self.embedding(tokens) * math.sqrt(self.embed_dim), offset=offset)  # (B, T, D)

    def _cross_attention(self, recorder: Any, grid: tuple[int, int]) -> Tensor:
        """The chosen layer's recorded cross-attention, averaged over heads: ``(B, T, H, W)``."""
        weights = recorder[f"layers.{self.attention_layer}.cross_attn"][-1].weights  # (B, nh, T, N)
        batch, _, steps, _ = weights.shape
        return weights.float().mean(dim=1).view(batch, steps, *grid)  # (B, T, N) -> (B, T, H, W)

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
        x = self._embed(tokens)
        if not with_attention:
            return self.out(self.decoder(x, memory, tgt_lengths=lengths)), None
        with record_attention(self.decoder) as recorder:
            hidden = self.decoder(x, memory, tgt_lengths=lengths)
        return self.out(hidden), self._cross_attention(recorder, grid)

    def init_state(self, features: Tensor) -> dict[str, Any]:
        """Project the memory once into the decoder's reorderable cache."""
        memory, grid = self.memory(features)
        return {"cache": self.decoder.init_cache(memory), "grid": grid}

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        """One search step: ``tokens (B, t)`` -> ``(log_probs (B, V), state, attention (B, H, W))``."""
        cache = state["cache"]
        x = self._embed(tokens[:, -1:], offset=cache.length)  # (B, 1, D)
        with record_attention(self.decoder) as recorder:
            hidden = self.decoder(x, cache=cache)  # (B, 1, D)
        log_probs = torch.log_softmax(self.out(hidden[:, 0]).float(), dim=-1)
        return log_probs, state, self._cross_attention(recorder, state["grid"])[:, 0]


DECODERS = ("show_attend_tell", "transformer")
