"""Spatial transformer classifier task (Jaderberg et al. 2015): data, model, system, app."""
