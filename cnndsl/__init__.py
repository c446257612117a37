"""cnndsl: a small language for convolutional networks, checked exactly as Keras builds them.

    import cnndsl
    net = cnndsl.load("examples/mnist.cnn")
    net.summary(), net.params.total, net.keras_model(), net.draw()

See cnndsl/api.py. Importing cnndsl imports neither TensorFlow nor Keras.
"""

from cnndsl.api import CheckError, CnndslWarning, Layer, Network, Params, load, loads
from cnndsl.version import __version__

__all__ = ["CheckError", "CnndslWarning", "Layer", "Network", "Params", "__version__", "load",
           "loads"]


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext cnndsl`: the `%%cnn` cell magic (IPython is imported only here)."""
    from cnndsl.jupyter import load_ipython_extension as register

    register(ipython)
