"""Log-mel features, normalisation and SpecAugment for speech recognition.

* Log-mel filterbank: ``torchaudio.transforms.MelSpectrogram`` with 80 mels, a 25 ms window and a
  10 ms hop at 16 kHz, then ``log(mel + 1e-6)``. No centring: frame ``t`` reads samples
  ``160 t .. 160 t + 399`` only, so valid frames never see padding.
* Normalisation: ``"utterance"`` (mean / variance of each mel bin over the utterance's valid
  frames; robust to level and channel differences, needs no statistics) or ``"global"`` (running
  mean / variance over training batches, kept as buffers in the checkpoint) or ``"none"``.
* SpecAugment (Park et al. 2019, "SpecAugment"), training only: ``num_freq_masks`` frequency
  masks of up to ``freq_mask_param`` bins and ``num_time_masks`` time masks each up to
  ``time_mask_ratio`` of the utterance's own valid length (LibriSpeech recipes: 2 x 27 bins, 5 %),
  drawn as ``torchaudio.transforms.FrequencyMasking`` / ``TimeMasking`` draw them (width uniform
  below the widest, start uniform where it fits, masked cells 0) but for the whole batch at once
  on the features' device: per utterance those transforms cost dozens of small kernels and a
  host round trip, which left the GPU idle most of a training step.

Features are computed in float32 even under ``bf16-mixed`` autocast: the log of small mel
energies needs the precision.

Shape legend: ``B`` batch, ``N`` samples, ``L`` feature frames, ``F`` mel bins.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchaudio
from torch import Tensor, nn

from multiattn.masks import check_lengths, lengths_to_mask

__all__ = ["LogMelFeatures", "SpecAugment", "feature_lengths", "SAMPLE_RATE", "HOP_SECONDS"]

SAMPLE_RATE = 16_000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
HOP_SECONDS = HOP / SAMPLE_RATE
WINDOW_SECONDS = WINDOW / SAMPLE_RATE
NORMALIZATIONS = ("utterance", "global", "none")


def feature_lengths(num_samples: Tensor | int) -> Tensor | int:
    """Frames produced from ``num_samples`` samples: ``(N - 400) // 160 + 1`` (0 below one window)."""
    if isinstance(num_samples, Tensor):
        return torch.clamp(torch.div(num_samples - WINDOW, HOP, rounding_mode="floor") + 1, min=0)
    return max((num_samples - WINDOW) // HOP + 1, 0)


def _bands(widest: Tensor, size: Tensor, extent: int) -> Tensor:
    """One random band per row: width ``floor(U * widest)``, start ``floor(U * (size - width))``.

    Args:
        widest: ``(B,)`` float, the widest band of each row.
        size: ``(B,)`` float, the extent each row's band must fit in.
        extent: the positions to mark (``>= size``).

    Returns:
        ``(B, extent)`` bool, ``True`` inside the band.
    """
    value = torch.rand(widest.shape, device=widest.device) * widest
    start = (torch.rand(widest.shape, device=widest.device) * (size - value)).floor()
    end = start + value.floor()
    positions = torch.arange(extent, device=widest.device)[None, :]  # (1, extent)
    return (positions >= start[:, None]) & (positions < end[:, None])


class SpecAugment(nn.Module):
    """Frequency and time masking of ``(B, L, F)`` features, per utterance, training only.

    Frequency masks cover the utterance's valid frames only; padding is left as it is.

    Args:
        freq_mask_param: widest frequency mask in bins.
        num_freq_masks: number of frequency masks.
        time_mask_ratio: widest time mask as a share of the utterance's valid frames.
        num_time_masks: number of time masks.
    """

    def __init__(
        self,
        freq_mask_param: int = 27,
        num_freq_masks: int = 2,
        time_mask_ratio: float = 0.05,
        num_time_masks: int = 2,
    ) -> None:
        super().__init__()
        self.freq_mask_param = freq_mask_param
        self.num_freq_masks = num_freq_masks
        self.time_mask_ratio = time_mask_ratio
        self.num_time_masks = num_time_masks

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Mask ``x (B, L, F)`` (masked cells become 0, the normalised mean); identity in eval mode."""
        if not self.training:
            return x
        batch, frames, bins = x.shape
        lengths = lengths.to(x.device)
        valid = lengths_to_mask(lengths, frames)  # (B, L)
        masked = torch.zeros(batch, frames, bins, dtype=torch.bool, device=x.device)
        widest = torch.full((batch,), float(self.freq_mask_param), device=x.device)
        all_bins = torch.full((batch,), float(bins), device=x.device)
        for _ in range(self.num_freq_masks):
            masked |= _bands(widest, all_bins, bins)[:, None, :] & valid[:, :, None]  # (B, L, F)
        widths = (self.time_mask_ratio * lengths).floor()  # (B,) float: int(ratio * length)
        for _ in range(self.num_time_masks):
            masked |= _bands(widths, lengths.to(widths.dtype), frames)[:, :, None]  # (B, L, 1)
        return x.masked_fill(masked, 0.0)


class LogMelFeatures(nn.Module):
    """Waveforms -> normalised (and, in training, SpecAugmented) log-mel features.

    Args:
        num_mels: ``F``.
        normalization: ``"utterance"``, ``"global"`` or ``"none"``.
        spec_augment: apply :class:`SpecAugment` in training mode.
        freq_mask_param / num_freq_masks / time_mask_ratio / num_time_masks: see SpecAugment.
        global_momentum: update rate of the global running statistics.
        speed_perturb: speed factors; in training mode each batch is played at one of them,
            drawn uniformly (Ko et al. 2015, "Audio Augmentation for Speech Recognition": 0.9,
            1.0, 1.1 — tempo and pitch change together, like a different speaker). Empty: off.
    """

    def __init__(
        self,
        *,
        num_mels: int = 80,
        normalization: str = "utterance",
        spec_augment: bool = True,
        freq_mask_param: int = 27,
        num_freq_masks: int = 2,
        time_mask_ratio: float = 0.05,
        num_time_masks: int = 2,
        global_momentum: float = 0.01,
        speed_perturb: Sequence[float] = (),
    ) -> None:
        super().__init__()
        if any(not 0.5 <= factor <= 2.0 for factor in speed_perturb):
            raise ValueError(f"speed_perturb: factors must lie in [0.5, 2], received {list(speed_perturb)}")
        # torchaudio's Speed resamples from factor * 16 kHz to 16 kHz (kernels reduced by the gcd).
        self.speeds = nn.ModuleList(
            torchaudio.transforms.Speed(SAMPLE_RATE, float(factor)) for factor in speed_perturb
        )
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization: expected one of {list(NORMALIZATIONS)}, received {normalization!r}"
            )
        self.num_mels = num_mels
        self.normalization = normalization
        self.global_momentum = global_momentum
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=WINDOW,
            win_length=WINDOW,
            hop_length=HOP,
            n_mels=num_mels,
            center=False,
        )
        self.spec_augment = (
            SpecAugment(
                freq_mask_param=min(freq_mask_param, num_mels),
                num_freq_masks=num_freq_masks,
                time_mask_ratio=time_mask_ratio,
                num_time_masks=num_time_masks,
            )
            if spec_augment
            else None
        )
        self.register_buffer("global_mean", torch.zeros(num_mels))
        self.register_buffer("global_var", torch.ones(num_mels))
        self.register_buffer("global_initialised", torch.zeros((), dtype=torch.bool))

    def log_mel(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Un-normalised log-mels: ``(B, N), (B,) -> (B, L, F), (B,)``; padded frames are 0."""
        if waveform.dim() != 2:
            raise ValueError(f"waveform: expected shape (B, N), received {tuple(waveform.shape)}")
        check_lengths(lengths, waveform.shape[0], waveform.shape[1])
        if waveform.shape[1] < WINDOW:
            waveform = nn.functional.pad(waveform, (0, WINDOW - waveform.shape[1]))
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            mel = self.mel(waveform.float())  # (B, F, L)
            feats = torch.log(mel + 1e-6).transpose(1, 2)  # (B, L, F)
        frames = feature_lengths(lengths)
        valid = lengths_to_mask(frames, feats.shape[1]).unsqueeze(-1)  # (B, L, 1)
        return feats * valid, frames

    def normalize(self, feats: Tensor, frames: Tensor) -> Tensor:
        """Mean / variance normalisation of ``(B, L, F)`` over valid frames; padding stays 0."""
        valid = lengths_to_mask(frames, feats.shape[1]).unsqueeze(-1).to(feats.dtype)  # (B, L, 1)
        count = valid.sum(dim=1).clamp(min=1)  # (B, 1)
        mean = (feats * valid).sum(dim=1) / count  # (B, F)
        var = (((feats - mean.unsqueeze(1)) * valid) ** 2).sum(dim=1) / count  # (B, F)
        if self.normalization == "none":
            return feats
        if self.normalization == "global":
            if self.training:
                with torch.no_grad():
                    weights = count / count.sum()  # (B, 1)
                    batch_mean = (mean * weights).sum(0)
                    batch_var = ((var + (mean - batch_mean) ** 2) * weights).sum(0)
                    if not bool(self.global_initialised):
                        self.global_mean.copy_(batch_mean)
                        self.global_var.copy_(batch_var)
                        self.global_initialised.fill_(True)
                    else:
                        self.global_mean.lerp_(batch_mean, self.global_momentum)
                        self.global_var.lerp_(batch_var, self.global_momentum)
            mean = self.global_mean.unsqueeze(0)  # (1, F)
            var = self.global_var.unsqueeze(0)  # (1, F)
        normed = (feats - mean.unsqueeze(1)) / torch.sqrt(var.unsqueeze(1) + 1e-5)
        return normed * valid

    def forward(self, waveform: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Compute features.

        Args:
            waveform: ``(B, N)`` 16 kHz mono samples, zero padded.
            lengths: ``(B,)`` valid samples.

        Returns:
            ``(features (B, L, F) float32, frames (B,))``; frames past ``frames[b]`` are 0.
        """
        if self.training and len(self.speeds):
            speed = self.speeds[int(torch.randint(len(self.speeds), ()))]
            if speed.factor != 1.0:
                waveform, lengths = speed(waveform, lengths)  # (B, N'), (B,)
                lengths = lengths.round().long().clamp(max=waveform.shape[1])
        feats, frames = self.log_mel(waveform, lengths)
        feats = self.normalize(feats, frames)
        if self.spec_augment is not None and self.training:
            feats = self.spec_augment(feats, frames)
        return feats, frames
