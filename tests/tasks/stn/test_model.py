"""STNClassifier: identity initialisation, shapes, gradients, the baseline switch, timm backbones."""

from __future__ import annotations

import pytest
import torch

from multiattn.stn import tps_control_points
from multiattn.tasks.stn.model import (
    TRANSFORMS,
    ClassifierConfig,
    LocalizationConfig,
    STNClassifier,
    STNModelConfig,
    TransformerConfig,
    build_model,
)


def _tiny(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    enabled: bool = True,
    transform: str = "affine",
    output_size: tuple[int, int] = (28, 28),
    classifier: str = "small_cnn",
    mean: tuple[float, ...] = (0.1307,),
    std: tuple[float, ...] = (0.3081,),
) -> STNClassifier:
    config = STNModelConfig(
        transformer=TransformerConfig(
            enabled=enabled,
            transform=transform,
            output_size=output_size,
            localization=LocalizationConfig(channels=(4, 4), hidden_dim=8),
        ),
        classifier=ClassifierConfig(name=classifier, channels=(4, 8), hidden_dim=16, dropout=0.0),
        mean=mean,
        std=std,
    )
    return build_model(config, in_channels=in_channels, num_classes=num_classes)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_identity_initialisation_returns_the_input(transform):
    torch.manual_seed(0)
    model = _tiny(transform=transform, output_size=(36, 36)).eval()
    images = torch.rand(3, 1, 36, 36)
    output = model(images)
    identity = torch.eye(output.theta.shape[1], 3)[: output.theta.shape[1]]
    if output.theta.shape[1] == 3:
        identity = torch.eye(3)
    if transform == "tps":
        identity = tps_control_points(4)
    assert torch.allclose(output.theta, identity.expand_as(output.theta), atol=1e-6)
    # Identity theta with align_corners=False samples pixel centres exactly.
    assert torch.allclose(output.warped, images, atol=1e-5)
    assert output.logits.shape == (3, 10)


def test_gradients_reach_every_parameter_and_no_nan():
    torch.manual_seed(0)
    model = _tiny(output_size=(16, 16))
    # Move the head off its zero-weight identity so gradients flow into the localisation net too.
    with torch.no_grad():
        model.transformer.head.linear.weight.normal_(0, 0.01)
    output = model(torch.rand(4, 1, 40, 40))
    loss = torch.nn.functional.cross_entropy(output.logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert len(model.localization_parameters()) > 0


def test_warp_happens_before_normalisation():
    # A zoom-out samples outside the image: the padding must be the dark background (0) in
    # [0, 1] space, which normalises to -mean/std, not to 0 (normalised grey).
    model = _tiny(output_size=(8, 8)).eval()
    with torch.no_grad():
        model.transformer.head.linear.bias.copy_(torch.tensor([3.0, 0, 0, 0, 3.0, 0]))
    output = model(torch.ones(1, 1, 8, 8))
    assert output.warped[0, 0, 0, 0] == 0.0 and output.warped[0, 0, 4, 4] == 1.0


def test_baseline_without_transformer():
    model = _tiny(enabled=False)
    images = torch.rand(2, 1, 60, 60)
    output = model(images)
    assert output.theta is None and output.warped is images and output.logits.shape == (2, 10)
    assert model.localization_parameters() == []


def test_timm_backbone_by_name():
    model = _tiny(
        classifier="test_resnet", in_channels=3, num_classes=4, mean=(0.5,), std=(0.5,), output_size=(32, 32)
    )
    output = model(torch.rand(2, 3, 48, 48))
    assert output.logits.shape == (2, 4) and output.warped.shape == (2, 3, 32, 32)


def test_unknown_names_fail_loudly():
    with pytest.raises(
        ValueError, match="transform: unknown name 'no_such_transform'; valid names: 'affine'"
    ):
        _tiny(transform="no_such_transform")
    with pytest.raises(ValueError, match="timm"):
        _tiny(classifier="no_such_model_anywhere")
    with pytest.raises(ValueError, match="mean / std"):
        _tiny(in_channels=3, mean=(0.1, 0.2))


@pytest.mark.parametrize("transform", ["scale_translate_anisotropic", "affine"])
def test_refined_region_starts_where_the_head_puts_it_and_its_refiner_learns(transform):
    torch.manual_seed(0)
    heatmap = transform != "affine"
    config = STNModelConfig(
        transformer=TransformerConfig(
            transform=transform,
            output_size=(16, 16),
            localization=LocalizationConfig(
                kind="heatmap" if heatmap else "fc", channels=(4, 4), hidden_dim=8, refine=True
            ),
        ),
        classifier=ClassifierConfig(channels=(4, 8), hidden_dim=16, dropout=0.0),
    )
    model = build_model(config)
    images = torch.rand(4, 1, 40, 40)
    theta = model(images).theta
    unrefined = model.transformer.head(model.transformer.localization(images))
    assert torch.allclose(theta, unrefined, atol=1e-6)  # identity correction at init
    refiner = model.transformer.refiner
    assert {id(p) for p in refiner.parameters()} <= {id(p) for p in model.localization_parameters()}
    with torch.no_grad():  # off its zero init, so gradients reach the refiner's CNN too
        refiner.correction.weight.normal_(0, 0.1)
    output = model(images)
    torch.nn.functional.cross_entropy(output.logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, parameter in refiner.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_refine_needs_an_affine_transform():
    for transform in ("projective", "tps"):
        config = STNModelConfig(
            transformer=TransformerConfig(transform=transform, localization=LocalizationConfig(refine=True))
        )
        with pytest.raises(ValueError, match="refine"):
            build_model(config)
