"""The front end as one call: text -> parse -> elaborate -> infer."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from cnndsl.analysis import keras_habits
from cnndsl.analysis.elaborate import elaborate
from cnndsl.analysis.infer import Analysis, infer
from cnndsl.analysis.train_section import check_outputs, validate_train
from cnndsl.common.diagnostics import ERROR, Diagnostic, Span, has_errors, sort_key
from cnndsl.lang import ast
from cnndsl.lang.parser import parse


class NetworkChoiceError(Exception):
    """`--network` names no network of the file, or the file has several and none was named;
    `names` are the file's networks."""

    def __init__(self, message: str, names: list[str]) -> None:
        super().__init__(message)
        self.names = names


@dataclass
class Result:
    analysis: Analysis | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    program: ast.Program | None = None  # the parsed file and its network checked: what
    network: ast.Network | None = None  # `build` writes blocks as functions from

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def _choose(program: ast.Program, name: str | None) -> ast.Network:
    names = [n.name.id for n in program.networks]
    if name is not None:
        for net in program.networks:
            if net.name.id == name:
                return net
        raise NetworkChoiceError(f"no network named `{name}` (the file defines: "
                                 f"{', '.join(names) or 'none'})", names)
    if len(names) > 1:
        raise NetworkChoiceError(f"the file defines {len(names)} networks ({', '.join(names)}); "
                                 "choose one with --network NAME", names)
    return program.networks[0]


def analyse(text: str, network: str | None = None) -> Result:
    """Check a whole .cnn source. Raises NetworkChoiceError only for a bad `network` choice."""
    # The front end builds many small acyclic objects: the cyclic garbage collector finds
    # nothing to free but its full passes grow with the heap, making time superlinear.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyse(text, network)
    finally:
        if enabled:
            gc.enable()


def _analyse(text: str, network: str | None) -> Result:
    program, diagnostics = parse(text, keras_habits.hint)
    if program is None:
        return Result(None, diagnostics)
    if not program.networks:
        return Result(None, [Diagnostic(ERROR, "this file defines no network", Span.point(1, 1),
                                        "add `network NAME { input 28x28x1 ... }`")])
    chosen = _choose(program, network)
    graph, diagnostics = elaborate(program, chosen)
    diagnostics += validate_train(graph.train)[1]
    if graph.outputs:
        diagnostics += check_outputs(graph.train, [p.name for p in graph.outputs])
    analysis = infer(graph)
    return Result(analysis, sorted(diagnostics + analysis.diagnostics, key=sort_key), program,
                  chosen)
