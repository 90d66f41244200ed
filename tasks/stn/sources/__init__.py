"""Data sources of the spatial transformer task: embedded generated digits, real formats, user images."""
