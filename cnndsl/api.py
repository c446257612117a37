"""The Python API: a checked network, and what can be made of it.

    import cnndsl
    net = cnndsl.load("examples/mnist.cnn")
    print(net.summary())
    model = net.keras_model()

`load` and `loads` raise CheckError when the source has errors; its warnings become
`CnndslWarning`s. Only `keras_model()` and `train()` import Keras (TensorFlow takes seconds
to import); everything else, `import cnndsl` included, stays light: the front end itself is
imported at the first load.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnndsl.common.diagnostics import WARNING, Diagnostic, Renderer, summary_line

if TYPE_CHECKING:
    import graphviz

    from cnndsl.analysis.infer import Analysis
    from cnndsl.analysis.pipeline import Result

STRING = "<string>"  # the file name errors give a source that `loads` was handed


class CheckError(Exception):
    """The source has errors, or names no single network to load. `diagnostics` holds the
    errors (and warnings) found; str() is what `cnndsl check` prints for them."""

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics or []


class CnndslWarning(UserWarning):
    """Something Keras accepts but that is likely a mistake (`dense` on an image, a
    stride that leaves pixels out...): the warnings of `cnndsl check`."""


@dataclass(frozen=True)
class Params:
    total: int
    trainable: int
    non_trainable: int


@dataclass(frozen=True)
class Layer:
    """One layer as `check` reports it. `name` is its full name (`conv3/block_1/conv_1`),
    `scope` the block instances it is in; `output_shape` has no batch dimension;
    `keras_name` the name of its Keras layer in keras_model() and the built module
    (`conv3-block_1-conv_1`: every Keras backend accepts it)."""

    name: str
    op: str
    scope: tuple[str, ...]
    output_shape: tuple[int, ...] | None
    params: int
    trainable_params: int
    macs: int
    receptive_field: tuple[int, int] | None
    line: int
    keras_name: str


def load(path: str | PathLike[str], network: str | None = None) -> Network:
    """The network of a .cnn file (`network` names one when the file defines several).
    Raises CheckError on errors, OSError when the file cannot be read."""
    from cnndsl.common.limits import SourceError, read_source

    try:
        source = read_source(Path(path))
    except SourceError as err:
        if isinstance(err.__cause__, OSError):
            raise err.__cause__ from None  # FileNotFoundError...: as open() raises it
        raise CheckError(str(err)) from None
    net = _checked(source, network, str(path))
    _warn(net)
    return net


def loads(source: str, network: str | None = None, *, filename: str = STRING) -> Network:
    """The network of a .cnn source text; `filename` is what errors call it. Raises
    CheckError on errors."""
    net = _checked(source, network, filename)
    _warn(net)
    return net


def check(source: str, network: str | None = None, filename: str = STRING) -> Network:
    """The network of a source whatever its errors (`ok` and `diagnostics` say them): for
    tools that show errors themselves, as the command line does. Raises the pipeline's
    NetworkChoiceError when `network` picks no single network of the source."""
    from cnndsl.analysis.pipeline import analyse

    return Network(analyse(source, network), source, filename)


def _checked(source: str, network: str | None, filename: str) -> Network:
    from cnndsl.analysis.pipeline import NetworkChoiceError

    try:
        net = check(source, network, filename)
    except NetworkChoiceError as err:
        names = ", ".join(err.names) or "none"
        if network is None:
            first = err.names[0]
            message = (f"{filename} defines {len(err.names)} networks ({names}): pass "
                       f'network="NAME" to choose one, e.g. network="{first}"')
        else:
            message = f"{filename} has no network named {network!r} (it defines: {names})"
        raise CheckError(message) from None
    if not net.ok:
        raise CheckError(net.report(), net.diagnostics)
    return net


def _warn(net: Network) -> None:
    """Each warning once, as the caller's (of load or loads) warning."""
    for d in net.diagnostics:
        if d.severity == WARNING:
            where = f"{net.filename}:{d.line}:{d.column}" if d.span else net.filename
            hint = f" (hint: {d.hint})" if d.hint else ""
            warnings.warn(f"{where}: {d.message}{hint}", CnndslWarning, stacklevel=3)


class Network:
    """A checked network: its shapes, parameters and MACs exactly as Keras has them, and
    the Keras model, code, diagram and training run made from it."""

    def __init__(self, result: Result, source: str, filename: str) -> None:
        self.source = source
        self.filename = filename
        self.diagnostics: list[Diagnostic] = result.diagnostics
        # The analysed graph every backend reads (None when the source did not parse):
        # for tools; its form may change between versions.
        self.analysis: Analysis | None = result.analysis
        self._result = result

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed); always true for a network from load or loads."""
        return self._result.ok

    def report(self, colour: bool = False) -> str:
        """The diagnostics as `cnndsl check` prints them, with its summary line."""
        summary = summary_line(self.diagnostics, self.filename)
        blocks = Renderer(self.filename, self.source, colour).blocks(self.diagnostics)
        return "\n\n".join([*blocks, *([summary] if summary else [])])

    def _analysed(self, ok: bool = False) -> Analysis:
        """The analysis; CheckError when there is none (or, with `ok`, when it has errors:
        no Keras model or code is made of a network with errors)."""
        if self.analysis is None or (ok and not self.ok):
            raise CheckError(self.report(), self.diagnostics)
        return self.analysis

    # ------------------------------------------------------------------------ figures

    @property
    def name(self) -> str:
        return self._analysed().graph.network

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The input's shape without the batch dimension; None with several inputs."""
        return self._analysed().input_shape

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """The output's shape without the batch dimension; None with several outputs."""
        return self._analysed().output_shape

    @property
    def inputs(self) -> list[tuple[str, tuple[int, ...] | None]]:
        a = self._analysed()
        return a.port_shapes(a.graph.inputs)

    @property
    def outputs(self) -> list[tuple[str, tuple[int, ...] | None]]:
        a = self._analysed()
        return a.port_shapes(a.graph.outputs)

    @property
    def params(self) -> Params:
        t = self._analysed().totals
        return Params(t.params, t.trainable, t.non_trainable)

    @property
    def macs(self) -> int:
        """Multiply-adds of one example's forward pass."""
        return self._analysed().totals.macs

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @cached_property
    def layers(self) -> list[Layer]:
        return [Layer(x.node.name, x.node.op.name, x.node.scope, x.shape, x.params,
                      x.trainable, x.macs, x.field.size if x.field else None, x.node.span.line,
                      x.node.keras_name)
                for x in self._analysed().layers]

    # ------------------------------------------------------------------------ reports

    def summary(self, depth: int | None = None, *, colour: bool = False) -> str:
        """The table `cnndsl check` prints. `depth` folds block instances nested deeper than
        `depth` levels into one row each (1: the top-level rows only)."""
        from cnndsl.backends import report
        from cnndsl.common.safetext import shown

        return report.table(self._analysed(), shown(self.filename), colour, _depth(depth))

    def to_json(self) -> dict[str, Any]:
        """The object `cnndsl check --json` prints."""
        from cnndsl.backends import report

        return report.to_json(self._result, self.filename)

    def __repr__(self) -> str:
        if self.analysis is None:
            return f"<cnndsl.Network with errors ({self.filename})>"
        a = self.analysis
        errors = "" if self.ok else " (with errors)"
        from cnndsl.analysis.ops.base import fmt_shape

        def ports(ports: list[tuple[str, Any]], single: Any) -> str:
            if len(ports) == 1:
                return fmt_shape(single)
            return "(" + ", ".join(f"{n} {fmt_shape(s)}" for n, s in ports) + ")"

        return (f"<cnndsl.Network {self.name}: {ports(self.inputs, a.input_shape)} -> "
                f"{ports(self.outputs, a.output_shape)}, {self.params.total:,} params{errors}>")

    def _repr_html_(self) -> str:
        from cnndsl.backends import report

        return report.html_table(self._analysed(), self.filename)

    # ------------------------------------------------------------------------ products

    def keras_source(self) -> str:
        """The Python module `cnndsl build` writes (Keras is not imported)."""
        from cnndsl.backends.codegen import module_source

        self._analysed(ok=True)
        return module_source(self._result, self.filename)

    def keras_model(self) -> Any:
        """A new keras.Model, uncompiled, built in-process (this imports Keras)."""
        from cnndsl.backends.runtime import build_model

        return build_model(self._analysed(ok=True))

    def draw(self, depth: int | None = None, rankdir: str = "TB") -> graphviz.Digraph:
        """The diagram `cnndsl draw` makes, as a graphviz.Digraph (a notebook shows it as
        SVG). `depth` as for summary(): 1 folds every top-level block instance into one
        box (the command's `--depth 0`); rankdir is TB (top to bottom) or LR."""
        from cnndsl.backends.draw import RANKDIRS, box_count, to_digraph
        from cnndsl.common.limits import MAX_DRAW_NODES

        a = self._analysed()
        if rankdir.upper() not in RANKDIRS:
            raise ValueError(f"rankdir must be 'TB' or 'LR', not {rankdir!r}")
        folded = None if depth is None else _depth(depth) - 1
        boxes = box_count(a, folded)
        if boxes > MAX_DRAW_NODES:
            raise ValueError(f"{self.name} draws as {boxes:,} boxes; Graphviz cannot lay out "
                             f"more than {MAX_DRAW_NODES:,} in reasonable time: fold blocks "
                             "with depth=N")
        return to_digraph(a, self.diagnostics, rankdir.upper(), folded)

    def train(self, epochs: int | None = None, data: str | PathLike[str] | None = None,
              out: str | PathLike[str] | None = None, *, verbose: int | None = None,
              **overrides: Any) -> Any:
        """Train with the file's `train { }` settings, `epochs` and any other setting
        (batch=, lr=, optimizer=, ...) overriding them; `data` an .npz or IDX folder, `out`
        the run folder, `verbose` Keras's (0: silent). Returns the Run: folder, history,
        metrics, model. Raises the training's TrainError. Imports Keras."""
        from cnndsl.training.session import train

        self._analysed(ok=True)
        if epochs is not None:
            overrides["epochs"] = epochs
        return train(self.source, self.filename, network=self.name,
                     data=None if data is None else Path(data),
                     out=None if out is None else Path(out), overrides=overrides,
                     verbose=verbose)


def _depth(depth: int | None) -> int | None:
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                              or depth < 1):
        raise ValueError(f"depth must be a whole number from 1, or None; not {depth!r}")
    return depth
