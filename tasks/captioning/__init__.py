"""Image captioning with spatial attention: Show, Attend and Tell on the shared core (see docs/captioning.md)."""
