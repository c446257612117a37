"""cnndsl: a small language for convolutional networks, checked exactly as Keras builds them."""

from cnndsl.version import __version__

__all__ = ["__version__"]
