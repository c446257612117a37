"""Mutation testing: break the core on purpose, one meaningful change at a time, and see
whether the tests notice. Each mutation is applied in a temporary copy of the repository
(never in the checkout) and only the tests relevant to it run, stopping at the first
failure. Prints each mutation's fate, the score and the survivors.

Run: python benchmarks/mutation.py [NAME ...]   (all mutations by default; --list names them)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SHAPES = ("tests/test_seed_numbers.py", "tests/test_runtime.py", "tests/test_fidelity_config.py",
          "tests/test_receptive_field.py")
KERAS = ("tests/test_fidelity_config.py", "tests/test_fidelity_numeric.py")
FIELDS = ("tests/test_receptive_field.py",)
DRAW = ("tests/test_cli_commands.py", "tests/test_draw.py")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    # ops: shape rules
    Mutation("valid output drops the last window", "cnndsl/analysis/ops/base.py",
             "return (extent - kernel) // stride + 1, left",
             "return (extent - kernel) // stride, left", SHAPES),
    Mutation("same padding rounds down", "cnndsl/analysis/ops/base.py",
             "return -(-size // stride), 0", "return size // stride, 0", SHAPES),
    Mutation("dilation ignored in the shape", "cnndsl/analysis/ops/base.py",
             "return kernel + (kernel - 1) * (dilation - 1)", "return kernel", SHAPES),
    Mutation("explicit padding counted once", "cnndsl/analysis/ops/base.py",
             "size + pad[0] + pad[1]", "size + pad[0]", SHAPES),
    Mutation("pool stride defaults to 1", "cnndsl/analysis/ops/pool.py",
             '"stride": args["stride"] or args["pool"]', '"stride": args["stride"] or (1, 1)',
             SHAPES),
    # ops: parameters and MACs
    Mutation("conv bias dropped from params", "cnndsl/analysis/ops/conv.py",
             'return (weights + (args["filters"] if args["use_bias"] else 0), 0)',
             "return (weights, 0)", SHAPES),
    Mutation("conv groups ignored in MACs", "cnndsl/analysis/ops/conv.py",
             'return kh * kw * (ctx.shape[-1] // args["groups"]) * out[0] * out[1] * out[2]',
             "return kh * kw * ctx.shape[-1] * out[0] * out[1] * out[2]", SHAPES),
    Mutation("sepconv MACs miss the pointwise part", "cnndsl/analysis/ops/conv.py",
             'return out[0] * out[1] * (kh * kw * mid + mid * args["filters"])',
             "return out[0] * out[1] * kh * kw * mid", SHAPES),
    Mutation("dense MACs count the bias", "cnndsl/analysis/ops/core.py",
             'return math.prod(ctx.shape) * args["units"]',
             'return (math.prod(ctx.shape) + 1) * args["units"]', SHAPES),
    Mutation("batch norm counts swapped", "cnndsl/analysis/ops/core.py",
             'return (c * (int(args["center"]) + int(args["scale"])), 2 * c)',
             'return (2 * c, c * (int(args["center"]) + int(args["scale"])))', SHAPES),
    # ops: receptive-field windows
    Mutation("RF ignores dilation", "cnndsl/analysis/ops/conv.py",
             "return (Window(effective_kernel(k[0], d[0]), s[0]), "
             "Window(effective_kernel(k[1], d[1]), s[1]))",
             "return (Window(k[0], s[0]), Window(k[1], s[1]))", FIELDS),
    Mutation("RF ignores pool strides", "cnndsl/analysis/ops/pool.py",
             'return (Window(a["kernel"][0], a["stride"][0]), '
             'Window(a["kernel"][1], a["stride"][1]))',
             'return (Window(a["kernel"][0], 1), Window(a["kernel"][1], 1))', FIELDS),
    # ops: Keras mapping
    Mutation("concat axis dropped", "cnndsl/analysis/ops/merge.py",
             'kwargs = {"axis": a["axis"]} if a.get("axis", -1) != -1 else {}',
             "kwargs = {}", KERAS),
    Mutation("batch norm settings dropped", "cnndsl/analysis/ops/core.py",
             "{k: a[k] for k, v in _BN_DEFAULTS.items() if a[k] != v}", "{}", KERAS),
    Mutation("pool padding ignored in Keras", "cnndsl/analysis/ops/pool.py",
             '"padding": "valid" if a["pad"] is not None else a["padding"]',
             '"padding": "valid"', KERAS),
    # infer
    Mutation("RF min instead of max at a merge", "cnndsl/analysis/infer.py",
             "return Field(tuple(max(f.extent[i] for f in inputs)",
             "return Field(tuple(min(f.extent[i] for f in inputs)", FIELDS),
    Mutation("RF growth ignores the jump", "cnndsl/analysis/infer.py",
             "f.extent[i] + (windows[i].kernel - 1) * f.jump[i]",
             "f.extent[i] + (windows[i].kernel - 1)", FIELDS),
    Mutation("peak memory frees at first use", "cnndsl/analysis/infer.py",
             "last_use[i] = layer.node.id", "last_use.setdefault(i, layer.node.id)", FIELDS),
    Mutation("peak memory frees inputs before the output exists", "cnndsl/analysis/infer.py",
             "live += sizes[layer.node.id]\n            peak = max(peak, live)\n"
             "            for i in set(layer.node.inputs):\n"
             "                if i is not None and last_use.get(i) == layer.node.id:\n"
             "                    live -= sizes[i]\n",
             "for i in set(layer.node.inputs):\n"
             "                if i is not None and last_use.get(i) == layer.node.id:\n"
             "                    live -= sizes[i]\n"
             "            live += sizes[layer.node.id]\n            peak = max(peak, live)\n",
             FIELDS),
    # codegen and runtime
    Mutation("build drops fused activations", "cnndsl/backends/codegen.py",
             '[*_kwargs(spec), f"name={_suffixed(name, spec.suffix)}"],\n'
             '                                  f"({x})"',
             '[*(k for k in _kwargs(spec) if not k.startswith("activation=")), '
             'f"name={_suffixed(name, spec.suffix)}"],\n                                  f"({x})"',
             KERAS),
    Mutation("runtime drops hidden activations", "cnndsl/backends/runtime.py",
             "kwargs = dict(spec.kwargs)",
             'kwargs = {k: v for k, v in spec.kwargs.items() if k != "activation" or is_output}',
             KERAS),
    Mutation("runtime drops explicit padding layers", "cnndsl/backends/runtime.py",
             "for k, spec in enumerate(specs):",
             "for k, spec in enumerate(specs[-1:]):", KERAS),
    # train
    Mutation("train ignores --seed", "cnndsl/training/session.py",
             "keras_backend.seed(on_backend, config.seed)",
             "keras_backend.seed(on_backend, 0)",
             ("tests/test_reproducible.py",)),
    Mutation("resume starts again from epoch 0", "cnndsl/training/fit.py",
             "epochs=config.epochs, initial_epoch=len(history),",
             "epochs=config.epochs, initial_epoch=0,",
             ("tests/test_train.py::test_sigkill_mid_run_then_resume_loses_and_repeats_no_epoch",)),
    # draw
    Mutation("draw ignores --collapse", "cnndsl/cli.py",
             "depth = 0 if collapse and depth is None else depth", "pass", DRAW),
    Mutation("draw ignores --rankdir", "cnndsl/cli.py",
             "net.diagnostics, rankdir.upper(), depth)", 'net.diagnostics, "TB", depth)',
             DRAW),
)


def copy_repository(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def killed(mutation: Mutation, copy: Path) -> bool:
    """Apply the mutation in the copy, run its tests (stop at the first failure), undo."""
    path = copy / mutation.path
    original = path.read_text()
    if original.count(mutation.old) != 1:
        raise SystemExit(f"`{mutation.name}`: the text to mutate is not in {mutation.path} "
                         "exactly once; update benchmarks/mutation.py")
    path.write_text(original.replace(mutation.old, mutation.new))
    try:
        env = {**os.environ, "PYTHONPATH": str(copy), "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p",
                               "no:cacheprovider", *mutation.tests], cwd=copy, env=env,
                              capture_output=True, text=True)
        return proc.returncode != 0
    finally:
        path.write_text(original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    options = parser.parse_args()
    chosen = [m for m in MUTATIONS if not options.names or m.name in options.names]
    if options.list:
        print("\n".join(m.name for m in MUTATIONS))
        return
    survivors = []
    with tempfile.TemporaryDirectory(prefix="cnndsl-mutation-") as tmp:
        copy = Path(tmp)
        copy_repository(copy)
        for m in chosen:
            start = time.perf_counter()
            dead = killed(m, copy)
            print(f"{'killed ' if dead else 'SURVIVED'}  {m.name}  "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            if not dead:
                survivors.append(m.name)
    score = len(chosen) - len(survivors)
    print(f"\nmutation score: {score}/{len(chosen)} killed ({100 * score / len(chosen):.0f}%)")
    if survivors:
        print("survivors:\n  " + "\n  ".join(survivors))


if __name__ == "__main__":
    main()
