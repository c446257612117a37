"""Build every example network on the Keras backend KERAS_BACKEND names, in this process:
`KERAS_BACKEND=jax python tests/backend_models.py`. tests/test_backends.py runs it once per
backend and compares what it prints with `check`.

One JSON line per network: check's params and Keras layer names (`check --json`'s
`keras_name`, with the `-pad` layers of `pad=`), and for the model of `build`'s module and
the runtime's model, count_params() and the layer names. Models are built one at a time
inside keras.StatelessScope, and the session is cleared before the scope ends: the
variables are Keras's own, with their real shapes, but their initial values are never
computed (JAX would compile an initializer per weight shape, most of the run's time). The
first network is also built the ordinary way, to show the scope changes no count. The last
line says which backend ran and whether TensorFlow was imported.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import keras
from conftest import example_networks, network_id

from cnndsl.analysis.pipeline import analyse
from cnndsl.backends import report
from cnndsl.backends.codegen import generate
from cnndsl.backends.runtime import build_model


def check_side(result: Any) -> dict[str, Any]:
    data = report.to_json(result, "net.cnn")
    nodes = {layer.node.name: layer.node for layer in result.analysis.layers}
    names = [layer["keras_name"] + spec.suffix for layer in data["layers"]
             if "shares" not in layer
             for spec in nodes[layer["name"]].op.to_keras(nodes[layer["name"]].args)]
    return {"params": data["params"]["total"], "names": sorted(names)}


def module_builder(source: str, network: str | None, folder: Path) -> Any:
    """`build_model` of the module `cnndsl build` writes, imported from `folder`."""
    code, diagnostics = generate(source, "net.cnn", network=network)
    assert code is not None, [d.message for d in diagnostics]
    path = folder / f"net_{network or 'single'}_{abs(hash(source))}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model


def measured(build: Any) -> dict[str, Any]:
    with keras.StatelessScope():
        model = build()
        # A Sequential model lists no InputLayer: its inputs give the name
        names = {layer.name for layer in model.layers} | {t.name for t in model.inputs}
        out = {"params": model.count_params(), "names": sorted(names)}
        del model
        # Inside the scope: no initial value is ever computed. Without its gc.collect(), a
        # third of the run's time: models without weights are small, Python's GC suffices.
        keras.backend.clear_session(free_memory=False)
    return out


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="cnndsl-backend-"))
    for i, (path, network) in enumerate(example_networks()):
        source = path.read_text()
        result = analyse(source, network)
        line = {"network": network_id((path, network)), "check": check_side(result),
                "module": measured(module_builder(source, network, folder)),
                "runtime": measured(lambda result=result: build_model(result.analysis))}
        if i == 0:
            line["allocated"] = build_model(result.analysis).count_params()
            keras.backend.clear_session()
        print(json.dumps(line), flush=True)
    print(json.dumps({"backend": keras.backend.backend(),
                      "tensorflow_imported": "tensorflow" in sys.modules}), flush=True)


if __name__ == "__main__":
    main()
