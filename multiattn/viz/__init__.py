"""Attention overlays drawn with matplotlib's Agg canvas (no pyplot, no backend switch)."""

from multiattn.viz import overlays
from multiattn.viz.overlays import *  # noqa: F403 (the public names of overlays, listed once there)

__all__ = list(overlays.__all__)
