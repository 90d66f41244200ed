"""SpecAugment, vectorised over the batch: masks inside each utterance's valid frames, widths
within their bounds, per-utterance draws, and the same width distribution as torchaudio's
masking transforms."""

from __future__ import annotations

import torch
import torchaudio

from multiattn.tasks.asr.features import SpecAugment


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of ``True`` in a 1-D bool tensor."""
    runs, current = [], 0
    for value in row.tolist():
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs + ([current] if current else [])


def test_identity_in_eval_mode() -> None:
    augment = SpecAugment().eval()
    x = torch.randn(2, 50, 20)
    assert torch.equal(augment(x, torch.tensor([50, 30])), x)


def test_time_masks_stay_inside_the_valid_frames_and_within_their_width() -> None:
    torch.manual_seed(0)
    augment = SpecAugment(freq_mask_param=0, num_freq_masks=1, time_mask_ratio=0.2, num_time_masks=1).train()
    lengths = torch.tensor([100, 60, 4, 0])
    x = torch.randn(4, 100, 8) + 5.0  # no cell is 0 before masking
    for _ in range(50):
        out = augment(x, lengths)
        masked = out == 0
        assert torch.equal(masked.all(dim=2), masked.any(dim=2))  # whole frames
        frames = masked[:, :, 0]
        for row, length in enumerate(lengths.tolist()):
            assert not frames[row, length:].any()  # padding untouched
            runs = _runs(frames[row])
            assert len(runs) <= 1 and all(run <= int(0.2 * length) for run in runs)
        assert torch.equal(out[~masked], x[~masked])


def test_frequency_masks_cover_valid_frames_only_and_differ_per_utterance() -> None:
    torch.manual_seed(1)
    augment = SpecAugment(freq_mask_param=10, num_freq_masks=1, time_mask_ratio=0.0, num_time_masks=0).train()
    lengths = torch.tensor([30, 20, 30, 30, 30, 30])
    x = torch.randn(6, 30, 40) + 5.0
    out = augment(x, lengths)
    masked = out == 0
    bands = masked[:, 0, :]  # (B, F): the band of each utterance, on its first frame
    for row, length in enumerate(lengths.tolist()):
        assert torch.equal(masked[row, :length], bands[row].expand(length, -1))
        assert not masked[row, length:].any()
        assert all(run < 10 for run in _runs(bands[row]))
    assert len({tuple(b.nonzero().flatten().tolist()) for b in bands}) > 1  # drawn per utterance


def test_width_distribution_matches_torchaudio() -> None:
    """Mean masked bins of one frequency mask (param 27, 80 bins) and one time mask (30 of 200 frames)."""
    torch.manual_seed(2)
    draws = 4000
    ours_freq = SpecAugment(
        freq_mask_param=27, num_freq_masks=1, time_mask_ratio=0.0, num_time_masks=0
    ).train()
    ours_time = SpecAugment(
        freq_mask_param=0, num_freq_masks=1, time_mask_ratio=0.15, num_time_masks=1
    ).train()
    x = torch.ones(draws, 200, 80)
    lengths = torch.full((draws,), 200)
    ours = (
        (ours_freq(x, lengths)[:, 0, :] == 0).sum(1).float().mean(),
        (ours_time(x, lengths)[:, :, 0] == 0).sum(1).float().mean(),
    )
    freq, time = torchaudio.transforms.FrequencyMasking(27), torchaudio.transforms.TimeMasking(30)
    spec = torch.ones(1, 80, 200)  # (1, F, L) as torchaudio expects
    theirs = (
        torch.stack([(freq(spec)[0, :, 0] == 0).sum() for _ in range(draws)]).float().mean(),
        torch.stack([(time(spec)[0, 0, :] == 0).sum() for _ in range(draws)]).float().mean(),
    )
    for a, b in zip(ours, theirs):
        assert abs(float(a) - float(b)) < 0.6, (float(a), float(b))  # both about (param - 1) / 2
