"""cnndsl: a small language for convolutional networks, checked exactly as Keras builds them."""

from cnndsl.version import __version__

__all__ = ["__version__"]


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext cnndsl`: the `%%cnn` cell magic (IPython is imported only here)."""
    from cnndsl.jupyter import load_ipython_extension as load

    load(ipython)
