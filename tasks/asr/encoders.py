"""Speech encoders selectable by name: Conformer (default), Transformer, BiLSTM.

All three map subsampled frames ``(x (B, S, D), lengths) -> (y (B, S, D), lengths)``:

* ``"conformer"``: :class:`multiattn.conformer.ConformerEncoder` (Gulati et al. 2020);
* ``"transformer"``: :class:`multiattn.transformer.TransformerEncoder` (pre-norm, Vaswani et al. 2017;
  used for speech by Dong et al. 2018, "Speech-Transformer");
* ``"bilstm"``: a bidirectional LSTM stack over packed sequences (the listener of Chan et al.
  2016 without the pyramid, since the convolutional front end already subsamples 4x), projected
  back to ``D``.

Shape legend: ``B`` batch, ``S`` frames, ``D`` embed_dim, ``H`` LSTM hidden size per direction.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from multiattn.masks import check_lengths, check_shape, lengths_to_mask

__all__ = ["BiLSTMEncoder"]


class BiLSTMEncoder(nn.Module):
    """Bidirectional LSTM encoder over packed sequences (padding never enters the recurrence).

    Args:
        embed_dim: ``D`` (input and output size).
        num_layers: stacked bidirectional layers.
        dropout: dropout between layers.
        hidden_dim: ``H`` per direction (default ``D // 2``, so the concatenation is ``D``).
    """

    def __init__(
        self, *, embed_dim: int, num_layers: int, dropout: float = 0.1, hidden_dim: int | None = None
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        hidden_dim = embed_dim // 2 if hidden_dim is None else hidden_dim
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.proj = nn.Linear(2 * hidden_dim, embed_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, S, D)``, ``lengths (B,)`` -> ``(y (B, S, D), lengths)``; padded frames are 0."""
        check_shape("x", x, (None, None, self.embed_dim))
        check_lengths(lengths, x.shape[0], x.shape[1])
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, S, 2H)
        y = self.proj(h)  # (B, S, D)
        return y * lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1).to(y.dtype), lengths
