"""Spatial transformer (Jaderberg et al. 2015): heads, warp, corners, IoU, recording."""

import pytest
import torch
from torch import Tensor, nn

from multiattn.recording import record_attention
from multiattn.stn import (
    STN_HEADS,
    AffineHead,
    GlimpseRefiner,
    ProjectiveHead,
    ScaleTranslateHead,
    SpatialTransformer,
    ThinPlateSplineHead,
    build_stn_head,
    map_output_points,
    region_grid_lines,
    region_iou,
    region_outline,
    theta_to_corners,
    tps_control_points,
    tps_map,
    warp,
)
from tests.helpers.gradients import assert_every_parameter_learns

IDENTITY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_identity_warp_returns_input(align_corners, padding_mode):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 9, 7)
    theta = IDENTITY.expand(2, 2, 3)
    out = warp(images, theta, (9, 7), align_corners=align_corners, padding_mode=padding_mode)
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)
    homography = torch.eye(3).expand(2, 3, 3)
    out_h = warp(images, homography, (9, 7), align_corners=align_corners, padding_mode=padding_mode)
    torch.testing.assert_close(out_h, images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(STN_HEADS))
def test_heads_start_at_identity(name):
    torch.manual_seed(0)
    head = build_stn_head(name, 5)
    theta = head(torch.randn(4, 5))
    expected = {"projective": torch.eye(3), "tps": tps_control_points(4)}.get(name, torch.eye(3)[:2])
    torch.testing.assert_close(theta, expected.expand(4, *expected.shape))


def test_scale_translate_layout_and_anisotropic():
    head = ScaleTranslateHead(in_features=2)
    with torch.no_grad():
        head.linear.bias.copy_(torch.tensor([0.5, 0.25, -0.5]))
    theta = head(torch.zeros(1, 2))
    torch.testing.assert_close(theta[0], torch.tensor([[0.5, 0.0, 0.25], [0.0, 0.5, -0.5]]))
    aniso = ScaleTranslateHead(in_features=2, anisotropic=True)
    with torch.no_grad():
        aniso.linear.bias.copy_(torch.tensor([0.5, 0.75, 0.1, 0.2]))
    torch.testing.assert_close(aniso(torch.zeros(1, 2))[0], torch.tensor([[0.5, 0.0, 0.1], [0.0, 0.75, 0.2]]))


def test_unknown_head_lists_valid_names():
    with pytest.raises(ValueError, match="affine.*scale_translate"):
        build_stn_head("rotation", 3)


def test_theta_to_corners_hand_computed():
    theta = torch.tensor([[[0.5, 0.0, 0.5], [0.0, 0.5, 0.0]]])
    # Normalised corners: x in {0, 1}, y in {-0.5, 0.5}.
    # align_corners=False: p = ((n + 1) * 60 - 1) / 2 -> x {29.5, 59.5}, y {14.5, 44.5}.
    expected_false = torch.tensor([[[29.5, 14.5], [59.5, 14.5], [59.5, 44.5], [29.5, 44.5]]])
    torch.testing.assert_close(theta_to_corners(theta, (60, 60), align_corners=False), expected_false)
    # align_corners=True: p = (n + 1) * 59 / 2 -> x {29.5, 59}, y {14.75, 44.25}.
    expected_true = torch.tensor([[[29.5, 14.75], [59.0, 14.75], [59.0, 44.25], [29.5, 44.25]]])
    torch.testing.assert_close(theta_to_corners(theta, (60, 60), align_corners=True), expected_true)
    # Height and width are not swapped: a 40 (H) x 60 (W) input.
    corners = theta_to_corners(IDENTITY[None], (40, 60), align_corners=True)
    torch.testing.assert_close(corners[0, 2], torch.tensor([59.0, 39.0]))


def test_corners_match_where_warp_samples():
    # A single bright pixel in the input must appear in the warped output at the position the
    # corner mapping predicts: output corner (1, 1) of a crop whose lower-right corner is that pixel.
    images = torch.zeros(1, 1, 20, 20)
    images[0, 0, 14, 9] = 1.0
    # With align_corners=True pixel p sits at n = 2 p / 19 - 1; the corner x = 1 maps to 0.5 + tx.
    shift_x, shift_y = 2 * 9 / 19 - 1 - 0.5, 2 * 14 / 19 - 1 - 0.5
    theta = torch.tensor([[[0.5, 0.0, shift_x], [0.0, 0.5, shift_y]]])
    corners = theta_to_corners(theta, (20, 20), align_corners=True)
    torch.testing.assert_close(corners[0, 2], torch.tensor([9.0, 14.0]))
    out = warp(images, theta, (11, 11), align_corners=True, padding_mode="zeros")
    assert out[0, 0, -1, -1] == pytest.approx(1.0, abs=1e-5)


def test_projective_corners_reduce_to_affine():
    theta = torch.tensor([[[0.8, 0.1, 0.2], [-0.1, 0.7, 0.0]]])
    homography = torch.cat([theta, torch.tensor([[[0.0, 0.0, 1.0]]])], dim=1)
    for align in (False, True):
        torch.testing.assert_close(
            theta_to_corners(homography, (30, 40), align_corners=align),
            theta_to_corners(theta, (30, 40), align_corners=align),
        )


def test_region_iou():
    boxes = torch.tensor([[2.0, 3.0, 10.0, 7.0], [0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    corners = torch.tensor(
        [
            [[2.0, 3.0], [10.0, 3.0], [10.0, 7.0], [2.0, 7.0]],  # identical -> 1
            [[2.0, 0.0], [6.0, 0.0], [6.0, 4.0], [2.0, 4.0]],  # half overlap: 8 / 24
            [[5.0, 5.0], [6.0, 5.0], [6.0, 6.0], [5.0, 6.0]],  # disjoint -> 0
        ]
    )
    torch.testing.assert_close(region_iou(corners, boxes), torch.tensor([1.0, 1.0 / 3.0, 0.0]))
    # Axis-aligned regions: the exact polygon IoU agrees.
    torch.testing.assert_close(region_iou(corners, boxes, exact=True), torch.tensor([1.0, 1.0 / 3.0, 0.0]))


def test_region_iou_exact_for_rotated_region():
    # A diamond inscribed in a 10x10 box: area 50, inside the box -> exact IoU 0.5; its bounding box is
    # the box itself -> 1. Both corner orientations give the same result.
    diamond = torch.tensor([[[5.0, 0.0], [10.0, 5.0], [5.0, 10.0], [0.0, 5.0]]])
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(region_iou(diamond, box), torch.tensor([1.0]))
    torch.testing.assert_close(region_iou(diamond, box, exact=True), torch.tensor([0.5]))
    torch.testing.assert_close(region_iou(diamond.flip(1), box, exact=True), torch.tensor([0.5]))
    # Box covering the diamond's left half: intersection 25, union 50 + 50 - 25 = 75.
    half = torch.tensor([[0.0, 0.0, 5.0, 10.0]])
    torch.testing.assert_close(region_iou(diamond, half, exact=True), torch.tensor([1.0 / 3.0]))


def make_transformer(head_name: str = "affine", align_corners: bool = False):
    torch.manual_seed(0)
    localization = nn.Sequential(nn.Flatten(), nn.Linear(1 * 8 * 8, 6), nn.ReLU())
    return SpatialTransformer(
        localization=localization,
        head=build_stn_head(head_name, 6),
        output_size=(8, 8),
        align_corners=align_corners,
    )


def test_transformer_identity_recording_and_gradients():
    model = make_transformer()
    images = torch.rand(3, 1, 8, 8)
    warped, theta = model(images)
    torch.testing.assert_close(warped, images, atol=1e-5, rtol=0)
    assert theta.shape == (3, 2, 3)
    with record_attention(model) as rec:
        warped_rec, theta_rec = model(images)
    torch.testing.assert_close(warped_rec, warped)
    (entry,) = rec[""]
    assert entry.axes == ("batch", "row", "col") and entry.weights.shape == (3, 2, 3)
    assert entry.meta == {"kind": "affine_theta", "input_hw": (8, 8), "align_corners": False}
    # Gradients reach the localisation net through the sampler (after leaving the identity).
    with torch.no_grad():
        model.head.linear.weight.normal_(0, 0.1)
    assert_every_parameter_learns(model(images)[0].pow(2).sum(), model)
    assert len(model.localization_parameters()) == 4


def test_transformer_bf16_and_bad_inputs():
    model = make_transformer("scale_translate")
    images = torch.rand(2, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        warped, theta = model(images)
    assert torch.isfinite(warped).all() and warped.dtype == torch.float32
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="theta"):
        warp(images, torch.zeros(2, 3, 2), (4, 4), align_corners=False, padding_mode="zeros")
    with pytest.raises(ValueError, match="padding_mode"):
        SpatialTransformer(
            localization=nn.Identity(), head=AffineHead(in_features=2), output_size=(4, 4), padding_mode="x"
        )
    assert isinstance(build_stn_head("projective", 2), ProjectiveHead)


def _affine_control(theta: torch.Tensor, grid_size: int) -> torch.Tensor:
    """TPS targets that place every control point where an affine ``theta`` (B, 2, 3) would."""
    source = tps_control_points(grid_size)  # (K, 2)
    return torch.einsum("kj,bij->bki", torch.cat([source, torch.ones(len(source), 1)], 1), theta)


@pytest.mark.parametrize("align_corners", [False, True])
def test_tps_identity_returns_input(align_corners):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 9, 7)
    head = ThinPlateSplineHead(in_features=5, grid_size=4)
    control = head(torch.randn(2, 5))
    out = warp(images, control, (9, 7), align_corners=align_corners, padding_mode="zeros")
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("grid_size", [2, 3, 5])
def test_tps_of_affine_targets_is_that_affine_warp(grid_size):
    # A thin-plate spline reproduces affine maps exactly (its bending part is then zero).
    torch.manual_seed(1)
    images = torch.rand(2, 1, 12, 10)
    theta = torch.tensor([[[0.6, 0.1, 0.2], [-0.15, 0.5, -0.1]], [[0.9, -0.2, -0.3], [0.2, 0.7, 0.25]]])
    control = _affine_control(theta, grid_size)
    for align in (False, True):
        affine = warp(images, theta, (8, 9), align_corners=align, padding_mode="zeros")
        spline = warp(images, control, (8, 9), align_corners=align, padding_mode="zeros")
        torch.testing.assert_close(spline, affine, atol=1e-5, rtol=0)
        torch.testing.assert_close(
            theta_to_corners(control, (12, 10), align_corners=align),
            theta_to_corners(theta, (12, 10), align_corners=align),
        )


def test_tps_interpolates_control_points_and_bends_between():
    torch.manual_seed(2)
    control = tps_control_points(3)[None] + 0.1 * torch.randn(1, 9, 2)
    torch.testing.assert_close(tps_map(control, tps_control_points(3)), control, atol=1e-5, rtol=0)
    # A moved centre point bends the map: the midpoint between it and a fixed one moves too, but
    # by less than the centre did, and the far corners stay put.
    bent = tps_control_points(3)[None].clone()
    bent[0, 4] += torch.tensor([0.3, 0.0])
    moved = tps_map(bent, torch.tensor([[0.5, 0.0], [-1.0, -1.0]]))[0]
    assert 0.0 < moved[0, 0] - 0.5 < 0.3
    torch.testing.assert_close(moved[1], torch.tensor([-1.0, -1.0]), atol=1e-5, rtol=0)


def test_tps_gradients_reach_control_points_and_localisation():
    torch.manual_seed(3)
    images = torch.rand(2, 1, 8, 8)
    control = (tps_control_points(4)[None] + 0.05 * torch.randn(2, 16, 2)).requires_grad_()
    warp(images, control, (8, 8), align_corners=False, padding_mode="zeros").pow(2).sum().backward()
    assert control.grad is not None and bool((control.grad.abs().sum(dim=-1) > 0).all())
    model = SpatialTransformer(
        localization=nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.ReLU()),
        head=build_stn_head("tps", 6),
        output_size=(8, 8),
    )
    warped, theta = model(images)
    assert theta.shape == (2, 16, 2)
    torch.testing.assert_close(warped, images, atol=1e-5, rtol=0)
    with record_attention(model) as rec:
        model(images)
    assert rec[""][0].meta["kind"] == "tps_control"
    with torch.no_grad():
        model.head.linear.weight.normal_(0, 0.1)
    model(images)[0].pow(2).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_region_outline_and_grid_lines():
    theta = torch.tensor([[[0.5, 0.0, 0.2], [0.0, 0.4, -0.1]]])
    corners = theta_to_corners(theta, (30, 40), align_corners=False)
    outline = region_outline(theta, (30, 40), align_corners=False, points_per_side=4)
    assert outline.shape == (1, 16, 2)
    torch.testing.assert_close(outline[0, ::4], corners[0])  # every edge starts at its corner
    box = torch.tensor([[5.0, 5.0, 25.0, 20.0]])
    torch.testing.assert_close(region_iou(outline, box, exact=True), region_iou(corners, box, exact=True))
    lines = region_grid_lines(theta, (30, 40), align_corners=False, lines=3, points=5)
    assert lines.shape == (1, 6, 5, 2)
    torch.testing.assert_close(lines[0, 0, 0], corners[0, 0])  # first row starts at the top-left
    torch.testing.assert_close(lines[0, 5, -1], corners[0, 2])  # last column ends at the bottom-right
    # A bent TPS: the outline's edge midpoints leave the straight line between the corners.
    bent = _affine_control(theta, 3)
    bent[0, 1, 1] -= 0.2  # top-middle control point moves up
    top_middle = region_outline(bent, (30, 40), align_corners=False, points_per_side=4)[0, 2]
    straight = theta_to_corners(bent, (30, 40), align_corners=False)[0, :2].mean(dim=0)
    assert top_middle[1] < straight[1] - 1.0
    with pytest.raises(ValueError, match="K = n"):
        map_output_points(torch.zeros(1, 5, 2), torch.zeros(1, 2))


def _theta(sx: Tensor, sy: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    zero = torch.zeros_like(sx)
    return torch.stack([torch.stack([sx, zero, tx], -1), torch.stack([zero, sy, ty], -1)], 1)


def test_glimpse_refiner_starts_as_the_identity_and_is_bounded():
    torch.manual_seed(0)
    refiner = GlimpseRefiner(in_channels=1, context=1.5, max_zoom=2.0)
    images = torch.rand(4, 1, 60, 60)
    theta = _theta(torch.tensor([0.3, 0.5, 0.2, 0.9]), torch.tensor([0.4, 0.5, 0.3, 0.7]),
                   torch.tensor([0.1, -0.5, 0.0, 0.2]), torch.tensor([0.0, 0.3, -0.6, 0.1]))  # fmt: skip
    assert torch.equal(refiner(images, theta), theta)  # zero correction at init
    with torch.no_grad():  # the largest correction the bounds allow
        refiner.correction.bias.copy_(torch.tensor([50.0, -50.0, 50.0, -50.0]))
    refined = refiner(images, theta)
    assert torch.allclose(refined[:, 0, 0], 2 * theta[:, 0, 0]) and torch.allclose(
        refined[:, 1, 1], theta[:, 1, 1] / 2
    )
    assert torch.allclose(refined[:, 0, 2], theta[:, 0, 2] + 1.5 * theta[:, 0, 0])  # one glimpse half-width
    assert torch.allclose(refined[:, 1, 2], theta[:, 1, 2] - 1.5 * theta[:, 1, 1])
    assert refined[:, 0, 1].abs().max() == 0 and refined[:, 1, 0].abs().max() == 0
    with pytest.raises(ValueError, match="context"):
        GlimpseRefiner(in_channels=1, context=0.5)


def _squares(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Images of one bright square each, its centre (normalised) and its half-side (normalised)."""
    half = 0.1 + 0.25 * torch.rand(count, generator=generator)  # 3-10 pixels of a 60-pixel canvas
    centre = (torch.rand(count, 2, generator=generator) - 0.5) * (1.6 - 2 * half[:, None])
    axis = (torch.arange(60) + 0.5) / 30 - 1  # pixel centres, normalised (align_corners=False)
    inside_x = (axis[None, :] - centre[:, :1]).abs() <= half[:, None]  # (N, 60)
    inside_y = (axis[None, :] - centre[:, 1:]).abs() <= half[:, None]
    images = (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]  # (N, 1, 60, 60)
    return images, centre, half


def test_glimpse_refiner_learns_the_object_size_from_its_glimpse():
    """Given a region on the object's centre but of one fixed size, the refiner learns to fit each
    object's size from what it sees (a regression on the true size here, to test that the glimpse
    carries it; the task trains it from labels alone)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    refiner = GlimpseRefiner(in_channels=1, context=2.0, max_zoom=3.0)
    optimizer = torch.optim.Adam(refiner.parameters(), lr=3e-3)

    def error(images, centre, half) -> Tensor:
        start = torch.full_like(half, 0.22)  # every region starts at the middle of the size range
        theta = refiner(images, _theta(start, start, centre[:, 0], centre[:, 1]))
        return (theta[:, 0, 0].log() - half.log()).abs() + (theta[:, 1, 1].log() - half.log()).abs()

    test = _squares(256, torch.Generator().manual_seed(1))
    with torch.no_grad():
        refiner.eval()
        before = float(error(*test).mean())
        refiner.train()
    for _ in range(150):
        loss = error(*_squares(32, generator)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    refiner.eval()
    with torch.no_grad():
        after = float(error(*test).mean())
    assert after < 0.4 * before, (before, after)
