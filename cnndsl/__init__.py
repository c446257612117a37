"""cnndsl: a small language for convolutional networks, checked exactly as Keras builds them."""

__version__ = "0.1.0"
