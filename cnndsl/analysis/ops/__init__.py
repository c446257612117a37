"""Every layer kind, each defined once (see base.Op); `OPS` maps a .cnn op name to it."""

from cnndsl.analysis.ops import conv, core, merge, norm, pool, rearrange, spatial
from cnndsl.analysis.ops.base import Op

_MODULES = (core, conv, spatial, pool, norm, rearrange, merge)
OPS: dict[str, Op] = {op.name: op for module in _MODULES for op in module.OPS}

__all__ = ["OPS", "Op"]
