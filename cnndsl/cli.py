"""The `cnndsl` command: thin wiring from arguments to the pipeline and back to exit codes.

Exit codes: 0 no errors (warnings allowed), 1 the file has errors, 2 usage errors.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.main import get_command

from cnndsl.common.diagnostics import Renderer
from cnndsl.common.safetext import shown
from cnndsl.console import (
    EXIT_ERRORS,
    EXIT_INTERNAL,
    EXIT_USAGE,
    colour_for,
    fail,
    read_source,
    summary_line,
)
from cnndsl.version import __version__


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
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


FileArg = Annotated[Path, typer.Argument(help="The .cnn file.", show_default=False, metavar="FILE")]
NetworkOpt = Annotated[str | None, typer.Option(
    "--network", "-n", help="Which network of the file (when it defines several).")]


@app.command()
def check(
    file: FileArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    network: NetworkOpt = None,
) -> int:
    """Check every shape, parameter and multiply-add, exactly as Keras (every network of
    the file in turn, unless --network picks one)."""
    from cnndsl.analysis.pipeline import NetworkChoiceError, analyse
    from cnndsl.backends import report

    source = read_source(file)
    try:
        results = [analyse(source, network)]
    except NetworkChoiceError as err:
        if network is not None or as_json:
            fail(str(err))
        results = [analyse(source, name) for name in err.names]
    name = str(file)
    if as_json:
        import json

        print(json.dumps(report.to_json(results[0], name), indent=2))
        return 0 if results[0].ok else EXIT_ERRORS
    for i, result in enumerate(results):
        if i:
            print()
        _report(result, source, name)
    return 0 if all(r.ok for r in results) else EXIT_ERRORS


def _report(result: Any, source: str, name: str) -> None:
    """One network's diagnostics on stderr, its table on stdout, and the summary line."""
    from cnndsl.backends import report

    renderer = Renderer(name, source, colour_for(sys.stderr))
    for block in renderer.blocks(result.diagnostics):
        print(block + "\n", file=sys.stderr)
    if result.ok and result.analysis is not None:
        print(report.table(result.analysis, shown(name), colour_for(sys.stdout)))
    summary = summary_line(result.diagnostics, name)
    if summary:
        print(summary, file=sys.stderr)


@app.command()
def build(
    file: FileArg,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", show_default=False, metavar="OUT",
        help="Where to write the module (default: FILE with .py beside it); `-` prints it.")
    ] = None,
    network: NetworkOpt = None,
) -> int:
    """Write the network as readable Keras code."""
    from cnndsl.backends.codegen import build_command

    return build_command(file, output, network)


@app.command()
def draw(
    file: FileArg,
    output: Annotated[Path, typer.Option(
        "--output", "-o", show_default=False, metavar="OUT",
        help="Where to write: .svg, .png, .pdf or .dot (the format follows the extension).")],
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
    from cnndsl.backends.draw import draw_command

    return draw_command(file, output, network, rankdir, collapse, depth, fmt)


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
