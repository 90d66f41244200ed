"""multiattn: a shared attention core (pure PyTorch; importing it never imports Lightning)."""

__version__ = "0.1.0"
