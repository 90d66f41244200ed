"""The corner mapping: pixels_to_normalized inverts theta_to_corners' pixel mapping, both conventions."""

from __future__ import annotations

import pytest
import torch

from multiattn.stn import output_corners, pixels_to_normalized, theta_to_corners


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", [(2, 3), (3, 3)])
def test_pixels_to_normalized_inverts_theta_to_corners(align_corners, shape):
    g = torch.Generator().manual_seed(0)
    theta = torch.eye(*shape).expand(4, *shape) + 0.2 * torch.randn(4, *shape, generator=g)
    if shape == (3, 3):
        theta[:, 2, 2] = 1.0
    pixels = theta_to_corners(theta, (28, 40), align_corners=align_corners)  # (B, 4, 2)
    back = pixels_to_normalized(pixels, (28, 40), align_corners=align_corners)
    torch.testing.assert_close(back, output_corners(theta))


def test_identity_covers_the_whole_image():
    corners = theta_to_corners(torch.eye(2, 3)[None], (10, 20), align_corners=False)
    torch.testing.assert_close(
        corners[0], torch.tensor([[-0.5, -0.5], [19.5, -0.5], [19.5, 9.5], [-0.5, 9.5]])
    )
