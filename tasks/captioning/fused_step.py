"""The Show, Attend and Tell decoder's decoding step on folded weights: a speed-up, nothing else.

:class:`~multiattn.tasks.captioning.decoders.ShowAttendTellDecoder` states the algorithm (``nn.LSTMCell``,
separate projections); in eval mode without autograd its ``step`` runs :func:`folded_advance`
instead, which gives the same values up to float rounding (tests/tasks/captioning/
test_decoders_fast_step.py) with fewer, larger matmuls:

- :class:`FoldedStepWeights`: the decoder's weights rearranged once per weight version;
- :func:`fold`: builds them outside autocast and inference mode (the decoder caches the result);
- :func:`folded_advance`: one step on them.

Shape legend: ``B`` hypotheses, ``C`` feature channels, ``H, W`` grid, ``N = H*W`` cells, ``E``
embed dim, ``Dh`` LSTM hidden size, ``V`` vocabulary, ``A`` attention dim, ``G = 4*Dh`` LSTM
gates, ``O`` deep-output width (``V`` when the output layers are composed, else ``E``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from multiattn.tasks.captioning.decoders import ShowAttendTellDecoder

__all__ = ["TOKEN_TABLE_MAX_VOCAB", "FoldedStepWeights", "fold", "folded_advance"]

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
      ``E``-wide deep output;
    - ``query_word`` decoders: the previous word's share of the attention query, ``W_w E[y]``,
      is ``A`` more table columns (or one more matmul of the embedding without a table).

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
        word_query = None if decoder.word_query is None else decoder.word_query.weight  # (A, E)
        self.word_query = None  # (E, A) without a table
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
            columns = [token_gates, token_out]
            if word_query is not None:
                columns.append(embeddings @ word_query.t())  # (V, A)
            self.token_table = torch.cat(columns, dim=1)  # (V, G + O [+ A])
            self.context_bias = torch.zeros_like(self.context_weight[0])  # (G + O,)
        else:
            self.token_table, self.token_gates = None, weight_ih[:, :embed_dim].t()  # -, (E, G)
            self.word_query = None if word_query is None else word_query.t()  # (E, A)
            self.context_bias = torch.cat([gate_bias, out_bias])  # (G + E,)


def fold(decoder: ShowAttendTellDecoder) -> FoldedStepWeights:
    """The decoder's current weights folded: normal (not inference) tensors, outside autocast,
    since the decoder's cache outlives the modes of the call that built it."""
    device_type = decoder.cell.weight_ih.device.type
    with torch.inference_mode(False), torch.no_grad(), torch.autocast(device_type, enabled=False):
        return FoldedStepWeights(decoder)


def folded_advance(
    decoder: ShowAttendTellDecoder, previous: Tensor, state: dict[str, Any], folded: FoldedStepWeights
) -> tuple[Tensor, dict[str, Any], Tensor]:
    """``decoder._advance`` in eval mode on ``folded`` weights: 3 matmuls and a table lookup per step."""
    gates, attn_dim = folded.gates, folded.attn_dim
    memory = state["memory"]
    by_hidden = torch.addmm(folded.hidden_bias, state["h"], folded.hidden_weight)  # (B, G + A [+ 1])
    query = by_hidden[:, gates : gates + attn_dim]  # (B, A)
    # query_word: + W_w E[y], the table's last A columns or a matmul of the embedding.
    if folded.token_table is not None:
        by_token = folded.token_table.index_select(0, previous)  # (B, G + O [+ A])
        if decoder.word_query is not None:
            query = query + by_token[:, -attn_dim:]
    else:
        embedded = decoder.embedding(previous)  # (B, E)
        if folded.word_query is not None:
            query = torch.addmm(query, embedded, folded.word_query)
    attended = decoder.attention.attend(
        memory.features,
        query,
        by_hidden[:, gates + attn_dim :] if decoder.attention.gate_proj is not None else None,
        grid_hw=state["grid"],
        features_proj=memory.features_proj,
    )
    by_context = torch.addmm(folded.context_bias, attended.context, folded.context_weight)  # (B, G + O)
    if folded.token_table is not None:
        width = by_context.shape[1]  # G + O
        pre_gates = torch.add(by_token[:, :gates], by_context[:, :gates])  # (B, G)
        deep = torch.add(by_token[:, gates:width], by_context[:, gates:])  # (B, O)
    else:
        pre_gates = torch.addmm(by_context[:, :gates], embedded, folded.token_gates)  # (B, G)
        deep = torch.add(embedded, by_context[:, gates:])  # (B, E)
    activated = pre_gates.add_(by_hidden[:, :gates]).sigmoid_()  # (B, G): i, f, sigmoid(2g), o
    in_gate, forget_gate, cell_gate, out_gate = activated.chunk(4, dim=1)  # 4 x (B, Dh)
    cell_gate = cell_gate.mul_(2.0).sub_(1.0)  # tanh(g) = 2 sigmoid(2g) - 1
    c = torch.addcmul(forget_gate * state["c"], in_gate, cell_gate)  # (B, Dh)
    h = out_gate * torch.sigmoid(c * 2.0).mul_(2.0).sub_(1.0)  # o * tanh(c)
    logits = torch.addmm(deep, h, folded.output_hidden)  # (B, O)
    if not folded.composed:
        logits = decoder.out(logits)  # (B, E) -> (B, V)
    return logits, {**state, "h": h, "c": c}, attended.weights  # (B, V), state, (B, H, W)
