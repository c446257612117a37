"""The `cnndsl` command: thin wiring from arguments to the pipeline and back to exit codes.

Exit codes: 0 no errors (warnings allowed), 1 the file has errors, 2 usage errors.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.main import get_command

from cnndsl.common.diagnostics import ERROR, Renderer, summary_line
from cnndsl.common.safetext import shown
from cnndsl.console import (
    EXIT_ERRORS,
    EXIT_INTERNAL,
    EXIT_USAGE,
    colour_for,
    error,
    fail,
    is_stdin,
    read_source,
    read_text,
    source_name,
)
from cnndsl.version import __version__

if TYPE_CHECKING:
    from cnndsl.api import Network


class _App(typer.Typer):
    """A typer app whose usage errors are one line, and which never shows a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        command = get_command(self)
        try:
            code = command.main(*args, prog_name="cnndsl", standalone_mode=False, **kwargs)
        except (typer.Abort, KeyboardInterrupt) as err:
            # click turns an EOFError from anywhere into Abort: that is not Ctrl-C
            if not isinstance(err.__cause__, EOFError):
                print("interrupted", file=sys.stderr)
                sys.exit(130)
            _internal(err.__cause__)
        except Exception as err:
            _exit_on_click_error(err)
            _internal(err)
        sys.exit(code if isinstance(code, int) else 0)


def _internal(err: BaseException) -> None:
    if os.environ.get("CNNDSL_DEBUG"):
        raise err
    print(f"cnndsl: internal error: {type(err).__name__}: {shown(str(err))} "
          "(this is a bug; please report it with the input file)", file=sys.stderr)
    sys.exit(EXIT_INTERNAL)


def _exit_on_click_error(err: Exception) -> None:
    """Typer's (vendored) click errors: help for a bare command, one line for the rest."""
    if not (hasattr(err, "format_message") and hasattr(err, "exit_code")):
        return
    if type(err).__name__ == "NoArgsIsHelpError":
        print(err.format_message())
        sys.exit(EXIT_USAGE)
    ctx = getattr(err, "ctx", None)
    where = f"cnndsl {ctx.info_name} --help" if ctx is not None and ctx.parent else "cnndsl --help"
    # typer and click both suggest a close command name: say it once
    message = re.sub(r"( Did you mean [^?]*\?)\1+", r"\1", err.format_message())
    fail(f"{message} (see `{where}`)", err.exit_code or EXIT_USAGE)


app = _App(
    name="cnndsl",
    help="A small language for convolutional networks: check, build, train, draw.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


FileArg = Annotated[Path, typer.Argument(
    help="The .cnn file (`-`: read it from stdin).", show_default=False, metavar="FILE")]
NetworkOpt = Annotated[str | None, typer.Option(
    "--network", "-n", help="Which network of the file (when it defines several).")]


@app.command()
def check(
    file: FileArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    network: NetworkOpt = None,
    depth: Annotated[int | None, typer.Option(
        "--depth", metavar="N", show_default=False,
        help="Fold block instances nested deeper than N levels into one row each, with "
             "their totals (1: only the top-level rows).")] = None,
) -> int:
    """Check every shape, parameter and multiply-add, exactly as Keras (every network of
    the file in turn, unless --network picks one)."""
    from cnndsl import api
    from cnndsl.analysis.pipeline import NetworkChoiceError

    if depth is not None and depth < 1:
        fail("--depth must be 1 or more")
    if depth is not None and as_json:
        fail("--depth folds the table; --json always has every layer")
    source = read_source(file)
    name = source_name(file)
    try:
        nets = [api.check(source, network, name)]
    except NetworkChoiceError as err:
        if network is not None or as_json:
            fail(str(err))
        nets = [api.check(source, one, name) for one in err.names]
    if as_json:
        import json

        print(json.dumps(nets[0].to_json(), indent=2))
        return 0 if nets[0].ok else EXIT_ERRORS
    for i, net in enumerate(nets):
        if i:
            print()
        _report(net, depth)
    return 0 if all(net.ok for net in nets) else EXIT_ERRORS


def _report(net: Network, depth: int | None) -> None:
    """One network's diagnostics on stderr, its table on stdout, and the summary line."""
    _diagnostics(net)
    if net.ok:
        print(net.summary(depth, colour=colour_for(sys.stdout)))
    _summary(net)


def _diagnostics(net: Network) -> None:
    renderer = Renderer(net.filename, net.source, colour_for(sys.stderr))
    for block in renderer.blocks(net.diagnostics):
        print(block + "\n", file=sys.stderr)


def _summary(net: Network) -> None:
    summary = summary_line(net.diagnostics, net.filename)
    if summary:
        print(summary, file=sys.stderr)


def _checked(file: Path, network: str | None, target: Path | None) -> Network | int:
    """Read and check a source for build and draw: its Network, or the exit code of a usage
    error already reported (the output `target` is the input, an unreadable source, no
    such network)."""
    from cnndsl import api
    from cnndsl.analysis.pipeline import NetworkChoiceError
    from cnndsl.common.limits import SourceError

    if target is not None and _refused(target, file):
        return EXIT_USAGE
    try:
        return api.check(read_text(file), network, source_name(file))
    except (SourceError, NetworkChoiceError) as err:
        error(str(err))
        return EXIT_USAGE


def _write(target: Path, data: str | bytes) -> int:
    """Write atomically (never through a symlink): 0, or EXIT_USAGE with a one-line error."""
    from cnndsl.common.files import WriteError, write_atomic

    try:
        write_atomic(target, data)
    except WriteError as err:
        error(str(err))
        return EXIT_USAGE
    return 0


def _refused(target: Path, file: Path) -> bool:
    """Whether `target` is the input itself (said as a one-line error)."""
    from cnndsl.common.files import InputOverwriteError, refuse_input

    try:
        refuse_input(target, [] if is_stdin(file) else [file])
    except InputOverwriteError as err:
        error(str(err))
        return True
    return False


@app.command()
def build(
    file: FileArg,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", show_default=False, metavar="OUT",
        help="Where to write the module (default: FILE with .py beside it; from stdin, "
             "NETWORK.py here); `-` prints it.")
    ] = None,
    network: NetworkOpt = None,
) -> int:
    """Write the network as readable Keras code."""
    return build_command(file, output, network)


def build_command(file: Path, out: str | None, network: str | None) -> int:
    """`cnndsl build FILE [-o OUT.py | -o -] [--network NAME]`: 0 built, 1 the file has
    errors (nothing written), 2 usage errors."""
    target = None if out == "-" else Path(out) if out else (
        None if is_stdin(file) else file.with_suffix(".py"))
    if target is not None and target.suffix != ".py":
        error(f"the output `{target}` must end in .py")
        return EXIT_USAGE
    net = _checked(file, network, target)
    if isinstance(net, int):
        return net
    _diagnostics(net)
    _summary(net)
    if not net.ok:
        return EXIT_ERRORS
    code = net.keras_source()
    if out == "-":
        sys.stdout.write(code)
        return 0
    target = target or Path(f"{net.name}.py")  # from stdin: named after the network, here
    if _refused(target, file) or _write(target, code):
        return EXIT_USAGE
    print(f"wrote {shown(str(target))}", file=sys.stderr)
    return 0


@app.command()
def draw(
    file: FileArg,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", show_default=False, metavar="OUT",
        help="Where to write: .svg, .png, .pdf or .dot (the format follows the extension); "
             "`-` writes to stdout. Default: NETWORK.svg beside FILE (from stdin, here).")
    ] = None,
    network: NetworkOpt = None,
    rankdir: Annotated[str, typer.Option(
        "--rankdir", help="TB (top to bottom) or LR (left to right).")] = "TB",
    collapse: Annotated[bool, typer.Option(
        "--collapse", help="Fold each top-level block instance into one node.")] = False,
    depth: Annotated[int | None, typer.Option(
        "--depth", metavar="N",
        help="Fold block instances nested deeper than N (0 = --collapse).")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", help="svg, png, pdf or dot: overrides the extension.")] = None,
) -> int:
    """Draw the network with Graphviz (.svg .png .pdf .dot)."""
    return draw_command(file, output, network, rankdir, collapse, depth, fmt)


FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = ("install Graphviz (`apt-get install graphviz`, `brew install graphviz` or "
                "graphviz.org/download), or write a .dot file")


def output_format(out: Path | None, fmt: str | None) -> str | None:
    """The format to write: `--format`, else the extension (`.gv` is dot), else SVG when
    the command names the file or writes stdout; None if unknown."""
    name = (fmt or (out.suffix.lstrip(".") if out else "svg")).lower()
    name = "dot" if name == "gv" else name
    return name if name in FORMATS else None


def draw_command(file: Path, out: Path | str | None, network: str | None, rankdir: str,
                 collapse: bool, depth: int | None, fmt: str | None) -> int:
    """`cnndsl draw`: 0 drawn, 1 drawn but the file has errors, 2 usage errors."""
    import graphviz

    from cnndsl.backends.draw import RANKDIRS, box_count, to_digraph
    from cnndsl.common.limits import MAX_DRAW_NODES

    to_stdout = str(out) == "-"
    target = None if out is None or to_stdout else Path(out)
    kind = output_format(target, fmt)
    if kind is None:
        what = f"format `{fmt}`" if fmt else f"output extension `{target.suffix or target.name}`"
        error(f"unknown {what}: use .svg, .png, .pdf or .dot (or --format)")
        return EXIT_USAGE
    if rankdir.upper() not in RANKDIRS:
        error(f"--rankdir must be TB or LR, not `{rankdir}`")
        return EXIT_USAGE
    if depth is not None and depth < 0:
        error("--depth must be 0 or more")
        return EXIT_USAGE
    if kind != "dot" and shutil.which("dot") is None:
        error(f"`dot` (Graphviz) is not on PATH, needed for .{kind}: {INSTALL_HINT}")
        return EXIT_USAGE
    net = _checked(file, network, target)
    if isinstance(net, int):
        return net
    if not net.ok:
        _diagnostics(net)
    a = net.analysis
    if a is None or not a.layers:
        error(f"`{net.filename}` has errors that leave nothing to draw")
        return EXIT_ERRORS
    depth = 0 if collapse and depth is None else depth
    boxes = box_count(a, depth)
    if kind != "dot" and boxes > MAX_DRAW_NODES:
        error(f"`{net.filename}` draws as {boxes:,} boxes; Graphviz cannot lay out more than "
              f"{MAX_DRAW_NODES:,} in reasonable time: fold blocks with --depth N (or "
              "--collapse), or write .dot")
        return EXIT_ERRORS
    g = to_digraph(a, net.diagnostics, rankdir.upper(), depth)
    try:
        data = g.source.encode() if kind == "dot" else g.pipe(format=kind, quiet=True)
    except graphviz.ExecutableNotFound:
        error(f"`dot` (Graphviz) is not on PATH, needed for .{kind}: {INSTALL_HINT}")
        return EXIT_USAGE
    except graphviz.CalledProcessError as err:
        stderr = (err.stderr or b"").decode(errors="replace").strip().splitlines()
        error(f"Graphviz failed: {stderr[-1] if stderr else err}")
        return EXIT_ERRORS
    if to_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    elif target is not None:
        if _write(target, data):
            return EXIT_USAGE
    else:  # named after the network, beside the input: say where it went
        target = (Path() if is_stdin(file) else file.parent) / f"{a.graph.network}.{kind}"
        if _refused(target, file) or _write(target, data):
            return EXIT_USAGE
        print(f"wrote {shown(str(target))}", file=sys.stderr)
    if not net.ok:
        n = sum(d.severity == ERROR for d in net.diagnostics)
        where = "stdout" if to_stdout else f"`{target}`"
        error(f"`{net.filename}` has {n} error{'s' if n > 1 else ''}; drew {where} anyway, "
              "errors in red")
        return EXIT_ERRORS
    return 0


@app.command()
def train(
    file: Annotated[Path | None, typer.Argument(
        help="The .cnn file (leave out with --resume).", show_default=False,
        metavar="FILE")] = None,
    network: NetworkOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", metavar="DIR", help="The run folder [default: runs/NETWORK-TIME/].",
        show_default=False)] = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", metavar="DIR", help="Continue an interrupted run from its last epoch.",
        show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", metavar="PATH",
        help="An .npz (x_train, y_train, x_test, y_test; or x, y) or a folder of MNIST-style "
             "IDX files, gzipped or not.", show_default=False)] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="mnist, fashion_mnist or cifar10 (keras.datasets).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs to train.")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(
        "--optimizer", help="adam, sgd, rmsprop, ...")] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="The loss.")] = None,
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="Comma-separated: accuracy,...")] = None,
    validation_split: Annotated[float | None, typer.Option(
        "--validation-split", help="Fraction of the training data held out.")] = None,
    early_stopping: Annotated[str | None, typer.Option(
        "--early-stopping",
        help="off, on, or options: monitor=val_loss,patience=2,min_delta=0,restore_best=true"
    )] = None,
    patience: Annotated[int | None, typer.Option(
        "--patience", help="Early-stopping patience (turns early stopping on).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    mixed_precision: Annotated[bool, typer.Option(
        "--mixed-precision", help="float16 compute on a GPU (ignored on the CPU).")] = False,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="tensorflow, jax or torch: the Keras backend [default: the train "
                          "section's, else KERAS_BACKEND, else tensorflow].",
        show_default=False)] = None,
    strategy: Annotated[str | None, typer.Option(
        "--strategy", help="auto, one, mirrored or multiworker (TF_CONFIG); see "
                           "docs/distributed.md.")] = None,
    devices: Annotated[str | None, typer.Option(
        "--devices", metavar="LIST",
        help="Devices to mirror over, e.g. /gpu:0,/gpu:1 (or /cpu:0,/cpu:1).")] = None,
    verbose: Annotated[int | None, typer.Option(
        "--verbose", min=0, max=2, metavar="0|1|2",
        help="As Keras's: 0 silent, 1 a progress bar (off a terminal, a line every 10 s), "
             "2 a line an epoch [default: 1].", show_default=False)] = None,
) -> int:
    """Build the network in-process with Keras and train it."""
    from cnndsl.training.commands import train_command
    from cnndsl.training.errors import EXIT_WORKER_LOST

    code = train_command(
        file, network=network, out=out, resume=resume, data=data,
        mixed_precision=mixed_precision, devices=devices, dataset=dataset, epochs=epochs,
        batch=batch, lr=lr, optimizer=optimizer, loss=loss, metrics=metrics,
        validation_split=validation_split, early_stopping=early_stopping, patience=patience,
        seed=seed, strategy=strategy, backend=backend, verbose=verbose)
    if code == EXIT_WORKER_LOST:
        from cnndsl.training.distribute import rejoin

        rejoin()
    return code



@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder of `cnndsl train`.",
                                        show_default=False, metavar="DIR")],
    data: Annotated[Path | None, typer.Option(
        "--data", metavar="PATH", help="Other data (.npz or IDX folder) to evaluate on.",
        show_default=False)] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Another keras dataset to evaluate on.")] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="The run's own backend (run.json), the one it is evaluated on: "
                          "another is an error.", show_default=False)] = None,
) -> int:
    """Re-evaluate a saved run on its test data (or on --data), on the backend that
    trained it."""
    from cnndsl.training.commands import evaluate_command

    return evaluate_command(run, data=data, dataset=dataset, backend_name=backend)


@app.command()
def fmt(
    files: Annotated[list[str], typer.Argument(
        help="The .cnn files (`-`: read stdin, write stdout).", show_default=False,
        metavar="FILE...")],
    check: Annotated[bool, typer.Option(
        "--check", help="Change nothing; exit 1 if a file is not formatted.")] = False,
    diff: Annotated[bool, typer.Option(
        "--diff", help="Print the changes as a diff instead of writing them.")] = False,
    align_comments: Annotated[bool, typer.Option(
        "--align-comments", help="Line up the comments after code in each paragraph.")] = False,
) -> int:
    """Rewrite files in the canonical layout (never one with syntax errors)."""
    from cnndsl.editor.fmt import fmt_command

    return fmt_command(files, check, diff, align_comments)


@app.command()
def lsp() -> int:
    """Run the language server over stdio (for editors)."""
    from cnndsl.editor.lsp import serve

    return serve()


def _print_version(value: bool) -> None:
    if value:
        print(f"cnndsl {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version.", callback=_print_version, is_eager=True)] = False,
) -> None:
    """cnndsl: describe a CNN in a few lines; check it, build Keras code, train it, draw it."""
