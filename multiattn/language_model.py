"""A recurrent token language model for shallow fusion (Mikolov et al. 2010; Gulcehre et al. 2015).

``p(y_t | y_<t)`` from an LSTM over the output tokens of a task (characters, word pieces, words),
trained on text alone and added to a decoder's scores at search time
(:func:`multiattn.decoding.shallow_fusion`). Hybrid CTC/attention recipes decode with such a
model (Watanabe et al. 2017; Kannan et al. 2018, "An Analysis of Incorporating an External
Language Model into a Sequence-to-Sequence Model"): the attention decoder learns its own implicit
language model only from the paired data, and a separate one fixes the spellings an unfamiliar
accent blurs.

Shape legend: ``B`` sequences (or search rows ``N``), ``T`` tokens, ``V`` vocabulary, ``E``
embedding size, ``H`` hidden size, ``L`` layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multiattn.masks import check_shape

__all__ = ["LSTMLanguageModel", "LMState", "INPUT_TABLE_MAX_VOCAB"]


INPUT_TABLE_MAX_VOCAB = 4096
"""Largest vocabulary for which a search precomputes every token's input projection."""


@dataclass
class LMState:
    """The recurrent state of ``N`` sequences: ``hidden`` and ``cell``, each ``(L, N, H)``.

    ``input_table`` ``(V, 4H)``, when present, is shared by all rows (see
    :meth:`LSTMLanguageModel.init_state`) and is not reordered.
    """

    hidden: Tensor
    cell: Tensor
    input_table: Tensor | None = None

    def reorder(self, indices: Tensor) -> LMState:
        """Keep rows ``indices`` ``(M,)`` (the search's :func:`~multiattn.decoding.reorder_state`)."""
        indices = indices.to(self.hidden.device)
        return LMState(
            self.hidden.index_select(1, indices), self.cell.index_select(1, indices), self.input_table
        )


class LSTMLanguageModel(nn.Module):
    """Embedding, ``L``-layer LSTM, dropout and a linear output over the vocabulary.

    Args:
        vocab_size: ``V`` (the task's token ids, specials included).
        embed_dim: ``E``.
        hidden_dim: ``H``.
        num_layers: ``L``.
        dropout: on the embeddings, between layers and before the output (training only).
        pad_id: the padding token (its embedding is zero and never trained).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        embed_dim: int = 256,
        hidden_dim: int = 512,
        num_layers: int = 1,
        dropout: float = 0.3,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if vocab_size < 2 or embed_dim < 1 or hidden_dim < 1 or num_layers < 1:
            raise ValueError(
                "LSTMLanguageModel: vocab_size >= 2 and positive sizes required, received "
                f"vocab_size={vocab_size}, embed_dim={embed_dim}, hidden_dim={hidden_dim}, num_layers={num_layers}"
            )
        self.vocab_size, self.hidden_dim, self.num_layers = vocab_size, hidden_dim, num_layers
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = nn.LSTM(
            embed_dim, hidden_dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def forward(self, tokens: Tensor, state: LMState | None = None) -> tuple[Tensor, LMState]:
        """``tokens (B, T)`` -> ``(logits (B, T, V), state after the last token)``."""
        initial = None if state is None else (state.hidden, state.cell)
        hidden, (h, c) = self.rnn(self.dropout(self.embedding(tokens)), initial)  # (B, T, H)
        return self.out(self.dropout(hidden)), LMState(h, c)

    def loss(self, tokens_in: Tensor, tokens_out: Tensor, *, ignore_index: int = -100) -> Tensor:
        """Mean cross-entropy per predicted token: ``tokens_in (B, T)`` predict ``tokens_out (B, T)``.

        ``tokens_out`` holds ``ignore_index`` where nothing is predicted (padding), so a batch's
        padding never changes the loss.
        """
        check_shape("tokens_out", tokens_out, tuple(tokens_in.shape))
        logits, _ = self(tokens_in)  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), tokens_out.flatten(), ignore_index=ignore_index)

    def init_state(self, batch_size: int, *, device: torch.device | str | None = None) -> LMState:
        """The zero state of ``batch_size`` empty sequences.

        In eval mode, for vocabularies of at most :data:`INPUT_TABLE_MAX_VOCAB` tokens, the state
        also carries the first layer's input projection of every token, ``W_ih emb(y) + b_ih +
        b_hh`` as a ``(V, 4H)`` table built from the current weights (once per search: ``V`` rows
        instead of one per hypothesis and step), which :meth:`step` reads instead of multiplying.
        """
        device = self.out.weight.device if device is None else device
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_dim, device=device)  # (L, B, H)
        table = None
        if not self.training and self.vocab_size <= INPUT_TABLE_MAX_VOCAB:
            # float32 whatever the caller's autocast, like the rest of the state.
            with torch.no_grad(), torch.autocast(torch.device(device).type, enabled=False):
                rnn = self.rnn
                table = torch.addmm(
                    rnn.bias_ih_l0 + rnn.bias_hh_l0, self.embedding.weight, rnn.weight_ih_l0.t()
                )
            table = table.to(device)  # (V, 4H)
        return LMState(zeros, zeros.clone(), table)

    def step(self, last: Tensor, state: LMState) -> tuple[Tensor, LMState]:
        """One token per row: ``last (N,)`` -> ``(log_probs (N, V) of the next token, state)``.

        With the input table of :meth:`init_state` the first layer's input projection is a row
        lookup, so a search step costs only the recurrent matmul ``h W_hh^T`` per row and layer.
        Equal to :meth:`forward` up to float rounding (a test checks it). In train mode (dropout
        active) it runs :meth:`forward`.
        """
        if self.training:
            logits, state = self(last[:, None], state)  # (N, 1, V)
            return torch.log_softmax(logits[:, 0].float(), dim=-1), state
        hidden_states, cells = [], []
        x = self.embedding(last) if state.input_table is None else None  # (N, E): layer 0's input
        for layer in range(self.num_layers):
            h, c = state.hidden[layer], state.cell[layer]  # (N, H) each
            w_hh = getattr(self.rnn, f"weight_hh_l{layer}")  # (4H, H)
            if layer == 0 and state.input_table is not None:
                gates = torch.addmm(state.input_table.index_select(0, last), h, w_hh.t())  # (N, 4H)
            else:
                w_ih = getattr(self.rnn, f"weight_ih_l{layer}")
                bias = getattr(self.rnn, f"bias_ih_l{layer}") + getattr(self.rnn, f"bias_hh_l{layer}")
                gates = torch.addmm(bias, x, w_ih.t()) + h @ w_hh.t()  # (N, 4H)
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)  # torch's LSTM gate order
            c = torch.sigmoid(forget_gate) * c + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
            x = torch.sigmoid(out_gate) * torch.tanh(c)  # (N, H)
            hidden_states.append(x)
            cells.append(c)
        logits = self.out(x)  # (N, V)
        new_state = LMState(torch.stack(hidden_states), torch.stack(cells), state.input_table)
        return torch.log_softmax(logits.float(), dim=-1), new_state
