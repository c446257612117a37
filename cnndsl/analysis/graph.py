"""The graph IR that elaboration produces: every layer named, scoped and wired."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnndsl.analysis.ops.base import Op, keras_name
from cnndsl.common.diagnostics import Span


@dataclass(frozen=True)
class Scope:
    """A block instance or one repetition of `repeat`: layers are named under its path."""

    path: tuple[str, ...]
    kind: str  # "block" or "repeat"
    block: str | None  # the block's name, for block instances
    span: Span


@dataclass(frozen=True)
class Node:
    """One layer. `inputs` holds node ids; None marks an input lost to an earlier error."""

    id: int
    name: str
    op: Op
    args: dict[str, Any]
    inputs: tuple[int | None, ...]
    scope: tuple[str, ...]
    span: Span
    arg_spans: dict[str, Span] = field(default_factory=dict)
    input_spans: tuple[Span, ...] = ()  # for merges: the span of each path
    shares: int | None = None  # `reuse`: the node whose layer (and weights) this applies again

    @property
    def local_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def keras_name(self) -> str:
        """The Keras layer name (conv3-block_1-conv_1): `check --json`, `build` and `train`
        all use this, so the report, a generated module and an in-process model agree."""
        return keras_name(self.name)


@dataclass(frozen=True)
class TrainEntry:
    """`key value... k=v...` in a `train { }` section, kept as data."""

    key: str
    values: tuple[Any, ...]
    options: dict[str, Any]
    span: Span


@dataclass(frozen=True)
class Port:
    """A network input or output: its .cnn name and its node."""

    name: str
    node: int


@dataclass
class Graph:
    """`output` is the first of `outputs` (the only one, for most networks); both are empty
    or None when an error lost the output."""

    network: str
    nodes: list[Node]
    scopes: list[Scope]
    output: int | None
    train: list[TrainEntry] = field(default_factory=list)
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)
