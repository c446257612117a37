"""Keras layer calls written by habit (`Conv2D(32, (3, 3), activation="relu")`), and the
`.cnn` line to write instead, for the hint of the error that refuses them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnndsl.analysis.ops import OPS
from cnndsl.analysis.values import Word, evaluate
from cnndsl.common.diagnostics import CnnError
from cnndsl.lang import ast

Call = dict[str, Any]  # a Keras call's arguments by Keras's own names


def _word(v: Any) -> str | None:
    """A Keras string argument (`"relu"`, or a bare `relu`) as a .cnn word."""
    name = v.name if isinstance(v, Word) else v
    return name if isinstance(name, str) and name.isidentifier() else None


def _size(v: Any) -> str:
    dims = v if isinstance(v, tuple) else (v, v)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise ValueError(v)
    return "x".join(map(str, dims))


def _number(v: Any) -> str:
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise ValueError(v)
    return repr(v)


def _window(call: Call, key: str, default: str | None = None) -> list[str]:
    """`stride=2x2`, unless the Keras default (1, or the pool size)."""
    value = call.get(key)
    if value is None or _word(value) == "None":
        return []
    shown = _size(value)
    if shown in ("1x1", default):
        return []
    height, width = shown.split("x")
    return [f"stride={height if height == width else shown}"]


def _flags(call: Call) -> list[str]:
    """Padding and activation as the flag words `same` and `relu`."""
    out = []
    if _word(call.get("padding")) == "same":
        out.append("same")
    activation = _word(call.get("activation"))
    if activation not in (None, "None", "linear"):
        out.append(activation)
    if _word(call.get("use_bias")) in ("False", "false"):
        out.append("use_bias=false")
    return out


def _conv(call: Call) -> list[str]:
    extra = [f"dilation={_size(call['dilation_rate'])}"] if "dilation_rate" in call else []
    extra += [f"groups={_number(call['groups'])}"] if "groups" in call else []
    return ["conv", _number(call["filters"]), _size(call["kernel_size"]),
            *_window(call, "strides"), *extra, *_flags(call)]


def _pool(op: str) -> Callable[[Call], list[str]]:
    def line(call: Call) -> list[str]:
        size = _size(call.get("pool_size", 2))
        return [op, size, *_window(call, "strides", size), *_flags(call)]
    return line


def _batchnorm(call: Call) -> list[str]:
    return ["batchnorm", *(f"{k}={_number(call[k])}" for k in ("momentum", "epsilon")
                           if k in call)]


# Keras class: (the op, Keras's positional parameters in order, the .cnn line from a call)
KERAS_CALLS: dict[str, tuple[str, tuple[str, ...], Callable[[Call], list[str]]]] = {
    "Conv2D": ("conv", ("filters", "kernel_size", "strides", "padding"), _conv),
    "Dense": ("dense", ("units", "activation"),
              lambda c: ["dense", _number(c["units"]), *_flags(c)]),
    "MaxPooling2D": ("maxpool", ("pool_size", "strides", "padding"), _pool("maxpool")),
    "AveragePooling2D": ("avgpool", ("pool_size", "strides", "padding"), _pool("avgpool")),
    "Dropout": ("dropout", ("rate",), lambda c: ["dropout", _number(c["rate"])]),
    "BatchNormalization": ("batchnorm", ("axis", "momentum", "epsilon"), _batchnorm),
    "Flatten": ("flatten", (), lambda c: ["flatten"]),
    "GlobalAveragePooling2D": ("globalavgpool", (), lambda c: ["globalavgpool"]),
    "GlobalMaxPooling2D": ("globalmaxpool", (), lambda c: ["globalmaxpool"]),
    "Activation": ("activation", ("activation",),
                   lambda c: [_word(c["activation"]) or "activation"]),
    "Input": ("input", ("shape",), lambda c: ["input", _size(c["shape"])]),
}


def _keras_name(name: str) -> str | None:
    """`Conv2D`, `layers.Conv2D` written as `Conv2D`; also `MaxPool2D`, Keras's alias."""
    aliases = {"MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D",
               "GlobalAvgPool2D": "GlobalAveragePooling2D",
               "GlobalMaxPool2D": "GlobalMaxPooling2D", "InputLayer": "Input"}
    name = aliases.get(name, name)
    return name if name in KERAS_CALLS else None


def translation(stmt: ast.Stmt) -> str | None:
    """The `.cnn` line for a statement written as a Keras layer call, or None if it is not
    one; when its arguments cannot be read, the op to use."""
    name = _keras_name(stmt.op.id)
    if name is None:
        return None
    op, params, line = KERAS_CALLS[name]
    call: Call = {}
    try:
        for i, arg in enumerate(stmt.args):
            key = arg.name.id if isinstance(arg, ast.Keyword) else params[i]
            call[key] = evaluate(arg.value, {})
        return " ".join(line(call))
    except (CnnError, IndexError, KeyError, ValueError):
        return OPS[op].usage()


def hint(stmt: ast.Stmt) -> str | None:
    """The hint for a Keras call: "in `.cnn`: `conv 32 3x3 relu`"."""
    line = translation(stmt)
    if line is None:
        return None
    return f"this is Keras; in `.cnn`, one line per layer: `{line}`"
