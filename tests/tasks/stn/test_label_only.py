"""Label-only localisation: the heatmap head's geometry, and training on labels alone moves the
region onto the digit (no box reaches the loss; boxes only score the region)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from multiattn.stn import SoftArgmaxHead, region_iou, soft_argmax
from multiattn.tasks.stn.data import STNBatch
from multiattn.tasks.stn.sources.distort import DistortionSpec, distort_digits
from multiattn.tasks.stn.sources.glyphs import load_handwritten_digits
from multiattn.tasks.stn.system import STNSystem

_TINY_LABEL_ONLY = {
    "model": {
        "transformer": {
            "transform": "scale_translate_anisotropic",
            "output_size": (20, 20),
            "localization": {"kind": "heatmap", "channels": (16, 16), "init_scale": 0.5, "class_maps": True},
        },
        "classifier": {"channels": (8, 16), "hidden_dim": 32, "dropout": 0.0},
    },
    "optim": {"learning_rate": 3e-3, "localization_lr_scale": 1.0, "scheduler": "none"},
    "localization_loss": {"class_map_weight": 1.0, "area_weight": 0.3},
    "log_overlays": False,
}


@pytest.mark.parametrize("shift", [(0, 0), (3, 5), (6, 1)])
def test_soft_argmax_of_a_peak_is_its_cell_centre_and_moves_with_it(shift):
    logits = torch.full((1, 7, 7), -50.0)
    logits[0, shift[1], shift[0]] = 50.0
    position, weights = soft_argmax(logits)
    expected = torch.tensor([[(2 * shift[0] + 1) / 7 - 1, (2 * shift[1] + 1) / 7 - 1]])
    assert torch.allclose(position, expected, atol=1e-5)
    assert torch.allclose(weights.sum(dim=(1, 2)), torch.ones(1))


def test_heatmap_head_starts_as_a_centred_zoom():
    head = SoftArgmaxHead(in_features=4, init_scale=0.4, num_classes=10)
    theta = head(torch.randn(3, 4, 15, 15))
    expected = torch.tensor([[0.4, 0.0, 0.0], [0.0, 0.4, 0.0]]).expand(3, 2, 3)
    assert torch.allclose(theta, expected, atol=1e-6)
    assert SoftArgmaxHead.class_logits(head.scores(torch.randn(3, 4, 15, 15))).shape == (3, 10)
    with pytest.raises(ValueError, match="init_scale"):
        SoftArgmaxHead(in_features=4, init_scale=1.5)


def _cluttered(glyphs, labels, count: int, seed: int) -> STNBatch:
    made = distort_digits(
        glyphs, labels, DistortionSpec(variant="cluttered"), num_samples=count, seed=seed, progress=False
    )
    images = torch.from_numpy(made.images).float()[:, None] / 255.0  # (N, H, W) -> (N, 1, H, W)
    return STNBatch(images, torch.from_numpy(made.labels).long(), torch.from_numpy(made.boxes).float())


@torch.no_grad()
def _region_scores(system: STNSystem, batch: STNBatch) -> tuple[float, float]:
    """Mean IoU of the region with the digit's box, and the median distance of their centres (pixels)."""
    system.eval()
    corners = system.corners(system.model(batch.images).theta, tuple(batch.images.shape[-2:]))
    system.train()
    distance = (corners.mean(dim=1) - (batch.boxes[:, :2] + batch.boxes[:, 2:]) / 2).norm(dim=1)
    return float(region_iou(corners, batch.boxes).mean()), float(distance.median())


def test_label_only_training_moves_the_region_onto_the_digit(one_thread):
    torch.manual_seed(0)
    hand = load_handwritten_digits()
    train = _cluttered(hand.images[:1400], hand.labels[:1400], 4096, seed=0)
    held_out = _cluttered(hand.images[1400:], hand.labels[1400:], 256, seed=1)  # other writers' digits
    system = STNSystem(**_TINY_LABEL_ONLY)
    optimizer = system.configure_optimizers()
    start_iou, start_distance = _region_scores(system, held_out)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        for index in torch.randperm(len(train), generator=generator).split(32):
            output = system.model(train.images[index])
            loss = F.cross_entropy(output.logits, train.labels[index])  # labels only: no boxes
            for weight, value in system.localization_losses(output, train.labels[index]).values():
                loss = loss + weight * value
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    iou, distance = _region_scores(system, held_out)
    whole = torch.tensor([[-0.5, -0.5], [59.5, -0.5], [59.5, 59.5], [-0.5, 59.5]]).expand(len(held_out), 4, 2)
    identity_iou = float(region_iou(whole, held_out.boxes).mean())  # the whole canvas: the identity's region
    # The region starts as a centred zoom, about 13 pixels from the digit (placed anywhere on the
    # 60x60 canvas); from the labels alone it learns to sit on the digit.
    assert distance < 0.35 * start_distance, (start_distance, distance)
    assert iou > identity_iou + 0.04, (identity_iou, start_iou, iou)


@pytest.mark.parametrize("start", [0, 2])
def test_refiner_is_frozen_until_its_start_epoch(start):
    transformer = {
        **_TINY_LABEL_ONLY["model"]["transformer"],
        "localization": {
            **_TINY_LABEL_ONLY["model"]["transformer"]["localization"],
            "refine": True,
            "refine_start_epoch": start,
        },
    }
    system = STNSystem(
        **{**_TINY_LABEL_ONLY, "model": {**_TINY_LABEL_ONLY["model"], "transformer": transformer}}
    )
    system.on_train_epoch_start()  # epoch 0 (no trainer)
    refiner = system.model.transformer.refiner
    assert all(p.requires_grad == (start == 0) for p in refiner.parameters())
    assert all(p.requires_grad for p in system.model.transformer.head.parameters())
