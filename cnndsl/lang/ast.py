"""The syntax tree: small frozen dataclasses, each with its source span."""

from __future__ import annotations

from dataclasses import dataclass

from cnndsl.common.diagnostics import Span

# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True)
class Size:
    """`3x3`, `28x28x1`."""

    dims: tuple[int, ...]
    span: Span


@dataclass(frozen=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Ref:
    """`@enc1`: a named tensor (`id` without the `@`)."""

    id: str
    span: Span


@dataclass(frozen=True)
class Attr:
    """`in.c`: a property of a named value."""

    obj: Name
    attr: Name
    span: Span


@dataclass(frozen=True)
class Tuple:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / //
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    """`max(8, c // 4)`: one of the built-in functions (values.FUNCTIONS)."""

    func: Name
    args: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Compare:
    op: str  # one of == != < <= > >=
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Logic:
    """`a and b`, `a or b` (short-circuit), `not a` (then `right` is None)."""

    op: str  # and, or, not
    left: Expr
    right: Expr | None
    span: Span


Expr = Num | Size | Str | Name | Ref | Attr | Tuple | BinOp | Neg | Call | Compare | Logic

# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Positional:
    value: Expr
    span: Span


@dataclass(frozen=True)
class Keyword:
    name: Name
    value: Expr
    span: Span


Arg = Positional | Keyword


@dataclass(frozen=True)
class Path:
    """One `| ...` path of a merge."""

    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Brace:
    """`{ ... }` after a statement: either paths (merges) or a body (`repeat`)."""

    paths: tuple[Path, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Stmt:
    """`op args... [as name] [{ ... }]`, or a block call `name(args...) [as name]`.

    `@name` on its own is a statement whose op is `@` and whose one argument is the Ref.
    """

    op: Name
    args: tuple[Arg, ...]
    alias: Name | None
    brace: Brace | None
    is_call: bool
    span: Span

    @property
    def ref(self) -> Ref | None:
        """The named tensor of an `@name` statement; None for any other statement."""
        if self.op.id != REF_OP:
            return None
        return self.args[0].value  # type: ignore[return-value]


REF_OP = "@"  # the op of an `@name` statement: not a NAME, so no op or block can take it


@dataclass(frozen=True)
class If:
    """`if COND { ... } else { ... }`: one branch is elaborated; `orelse` holds an
    `else if` as a one-statement body."""

    cond: Expr
    body: tuple[Statement, ...]
    orelse: tuple[Statement, ...]
    span: Span


Statement = Stmt | If

# ----------------------------------------------------------------------------- top level


@dataclass(frozen=True)
class Param:
    name: Name
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class BlockDef:
    name: Name
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Network:
    name: Name
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class TrainSection:
    entries: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Program:
    networks: tuple[Network, ...]
    blocks: tuple[BlockDef, ...]
    trains: tuple[TrainSection, ...]
