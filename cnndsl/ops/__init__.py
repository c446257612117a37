"""Every layer kind, each defined once (see base.Op); `OPS` maps a .cnn op name to it."""

from cnndsl.ops import conv, core, merge, pool
from cnndsl.ops.base import Op

OPS: dict[str, Op] = {op.name: op for module in (core, conv, pool, merge) for op in module.OPS}

__all__ = ["OPS", "Op"]
