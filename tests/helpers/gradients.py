"""Gradient checks the module tests share."""

from __future__ import annotations

from torch import Tensor, nn


def assert_every_parameter_learns(loss: Tensor, *modules: nn.Module) -> None:
    """``loss.backward()`` gives every parameter of ``modules`` a gradient that is not all zero."""
    loss.backward()
    for module in modules:
        for name, param in module.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name
