"""`cnndsl draw`: diagrams laid out by the real Graphviz `dot`, read back as JSON positions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT

from cnndsl.analysis.pipeline import analyse
from cnndsl.cli import draw_command

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")

GOOGLENET = """
block inception(c1, c3r, c3, c5r, c5, pool) {
  concat {
    | conv c1 1x1 relu
    | conv c3r 1x1 relu; conv c3 3x3 same relu
    | conv c5r 1x1 relu; conv c5 5x5 same relu
    | maxpool 3x3 stride=1 same; conv pool 1x1 relu
  }
}

block residual(filters) {
  add {
    | identity
    | conv filters 3x3 same; batchnorm; relu
      conv filters 3x3 same; batchnorm
  }
  relu
}

network demo {
  input 28x28x192
  inception(64, 96, 128, 16, 32, 32) as inception_3a
  inception(128, 128, 192, 32, 96, 64) as inception_3b
  repeat 2 { residual(480) }
  globalavgpool
  dense 10 softmax
}
"""

BROKEN = """
network broken {
  input 32x32x3
  conv 16 3x3 same relu
  maxpool 2x2
  conv 32 20x20 relu
  conv 64 3x3 relu
  flatten
  dense 10 softmax
}
"""


def draw(src: Path, out: Path, *, rankdir: str = "TB", collapse: bool = False,
         depth: int | None = None, fmt: str | None = None, network: str | None = None) -> int:
    return draw_command(src, out, network, rankdir, collapse, depth, fmt)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def layout(dot_file: Path) -> dict:
    """The positions dot gives: `dot -Tjson` of the file we wrote."""
    proc = subprocess.run(["dot", "-Tjson", str(dot_file)], capture_output=True, check=True)
    return json.loads(proc.stdout)


def nodes(graph: dict) -> dict[str, tuple[float, float]]:
    """Drawn node name -> (x, y); clusters and rank groups are objects without a `pos`."""
    out = {}
    for obj in graph["objects"]:
        if "pos" in obj:
            x, y = obj["pos"].split(",")
            out[obj["name"]] = (float(x), float(y))
    return out


def labels(graph: dict) -> dict[str, str]:
    return {o["name"]: o.get("label", "") for o in graph["objects"] if "pos" in o}


def clusters(graph: dict) -> list[dict]:
    return [o for o in graph["objects"] if o["name"].startswith("cluster_")]


# ----------------------------------------------------------------------------- whole networks


@needs_dot
def test_resnet50_one_cluster_per_block_and_one_node_per_layer(tmp_path):
    out = tmp_path / "resnet50.dot"
    assert draw(EXAMPLES / "resnet50.cnn", out) == 0
    source = out.read_text()
    a = analyse((EXAMPLES / "resnet50.cnn").read_text()).analysis
    assert source.count("subgraph cluster_") == len(a.graph.scopes) == 20
    graph = layout(out)
    assert len(nodes(graph)) == len(a.layers) == 189
    cluster_labels = " ".join(c["label"] for c in clusters(graph))
    assert "<b>conv3</b> — 28x28x512" in cluster_labels
    assert "stage · 1.23M params" in cluster_labels


@needs_dot
def test_mnist_png(tmp_path):
    out = tmp_path / "mnist.png"
    assert draw(EXAMPLES / "mnist.cnn", out) == 0
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["mnist.png"]  # no temporary file left


@needs_dot
def test_layer_labels_show_op_arguments_shape_and_params(tmp_path):
    out = tmp_path / "mnist.dot"
    assert draw(EXAMPLES / "mnist.cnn", out) == 0
    text = out.read_text()
    assert "<b>conv 3x3/2 same</b><br/>16 filters, relu" in text
    assert "13x13x16 · 1.17K params" in text
    assert "<b>maxpool 2x2/2 same</b>" in text
    assert ">FC1</font>" in text  # a name given with `as` is shown; made-up names are not
    assert ">conv_1<" not in text
    assert 'n6 -> n7 [label=" 64"]' in text  # edges carry the tensor shape
    assert len(nodes(layout(out))) == 9


def test_new_ops_labels_show_their_settings(tmp_path):
    out = tmp_path / "ops.dot"
    src = write(tmp_path, "ops.cnn", """network n {
  input 16x16x3
  rescale (1/255, 2, 3) offset=-1
  local 8 3x3 stride=2 pad=1 relu
  convt 4 3x3 stride=2 same output_padding=1
  upsample 2 bilinear
  crop ((1, 0), (0, 1))
  dropout 0.2 noise_shape=(1, 1, 1)
  leaky_relu alpha=0.1
  gelu approximate=true
  channel_shuffle groups=2
}
""")
    assert draw(src, out, fmt="dot") == 0
    text = out.read_text()
    for label in ("<b>rescale x(0.003922, 2, 3) + -1</b>",
                  "<b>local 3x3/2</b><br/>8 filters, pad 1, unshared, relu",
                  "<b>convt 3x3/2 same</b><br/>4 filters, output padding 1",
                  "<b>upsample x2 bilinear</b>", "<b>crop ((1, 0), (0, 1))</b>",
                  "<b>dropout 0.2</b><br/>noise shape 1x1x1", "<b>leaky_relu alpha=0.1</b>",
                  "<b>gelu approximate=true</b>", "<b>channel shuffle, 2 groups</b>"):
        assert label in text, label


@needs_dot
def test_inception_paths_sit_side_by_side_in_source_order(tmp_path):
    src = write(tmp_path, "googlenet.cnn", GOOGLENET)
    out = tmp_path / "googlenet.dot"
    assert draw(src, out) == 0
    pos = nodes(layout(out))
    a = analyse(GOOGLENET).analysis
    for block in ("inception_3a", "inception_3b"):
        inside = [x for x in a.layers if x.node.scope == (block,)]
        concat, ids = inside[-1], {x.node.id for x in inside}
        fork = inside[0].node.inputs[0]  # the layer feeding the block
        heads = [f"n{x.node.id}" for x in inside if not ids & set(x.node.inputs)]
        assert len(heads) == 4
        ys = [pos[h][1] for h in heads]
        xs = [pos[h][0] for h in heads]
        assert max(ys) - min(ys) < 1, "the first layers of the paths share a rank"
        assert xs == sorted(xs) and len(set(xs)) == 4, "paths left to right in source order"
        merge = pos[f"n{concat.node.id}"]
        assert all(merge[1] < y < pos[f"n{fork}"][1] for y in ys), "between fork and merge"


@needs_dot
def test_left_to_right_puts_paths_one_above_the_other(tmp_path):
    src = write(tmp_path, "googlenet.cnn", GOOGLENET)
    out = tmp_path / "googlenet.dot"
    assert draw(src, out, rankdir="LR") == 0
    pos = nodes(layout(out))
    heads = [pos[f"n{i}"] for i in (1, 2, 4, 6)]  # inception_3a's path heads
    assert max(x for x, _ in heads) - min(x for x, _ in heads) < 1
    assert len({y for _, y in heads}) == 4


# ----------------------------------------------------------------------------- folding


@needs_dot
def test_collapse_folds_each_top_level_block_and_repeats(tmp_path):
    src = write(tmp_path, "googlenet.cnn", GOOGLENET)
    out = tmp_path / "collapsed.dot"
    assert draw(src, out, collapse=True) == 0
    graph = layout(out)
    names = labels(graph)
    assert clusters(graph) == []
    # input, inception_3a, inception_3b, residual x 2, globalavgpool, dense
    assert len(names) == 6
    folded = [v for k, v in names.items() if k.startswith("fold_")]
    assert len(folded) == 3
    assert any("<b>residual x 2</b>" in v for v in folded)
    assert any("<b>inception_3a</b>" in v and "28x28x192 → 28x28x256" in v for v in folded)
    assert not any("inception x" in v for v in folded)  # different shapes: not repeats


@needs_dot
def test_depth_folds_only_deeper_blocks(tmp_path):
    out = tmp_path / "resnet_depth1.dot"
    assert draw(EXAMPLES / "resnet50.cnn", out, depth=1) == 0
    graph = layout(out)
    assert len(clusters(graph)) == 4  # the stages stay open
    folded = [v for k, v in labels(graph).items() if k.startswith("fold_")]
    assert len(folded) == 8  # per stage: the projection block and `bottleneck x N`
    repeats = sorted(v.split("<b>bottleneck x ")[1][0] for v in folded if "bottleneck x" in v)
    assert repeats == ["2", "2", "3", "5"]

    out0 = tmp_path / "resnet_collapsed.dot"
    assert draw(EXAMPLES / "resnet50.cnn", out0, collapse=True) == 0
    names = labels(layout(out0))
    assert len(names) == 13  # 7 stem layers, 4 stages, global pool, dense
    assert sum(k.startswith("fold_") for k in names) == 4


# ----------------------------------------------------------------------------- errors


@needs_dot
def test_a_file_with_shape_errors_still_draws(tmp_path, capsys):
    src = write(tmp_path, "broken.cnn", BROKEN)
    out = tmp_path / "broken.svg"
    assert draw(src, out) == 1
    err = capsys.readouterr().err
    assert "error: the 20-wide window does not fit" in err  # the diagnostic, rendered
    assert "drew" in err
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg

    dot_out = tmp_path / "broken.dot"
    assert draw(src, dot_out) == 1
    text = dot_out.read_text()
    red = [line for line in text.splitlines() if 'fillcolor="#fcbba1"' in line]
    assert len(red) == 1 and "conv 20x20" in red[0]
    assert "the 20-wide window does not fit in" in red[0]
    dashed = [line for line in text.splitlines() if "dashed" in line and "label=<" in line]
    assert len(dashed) == 3  # conv, flatten, dense after the error: shape unknown
    assert "16x16x16" in text  # layers before the error are drawn normally
    assert len(nodes(layout(dot_out))) == 7


def test_errors_no_layer_shows_go_in_the_title(tmp_path, capsys):
    src = write(tmp_path, "typo.cnn", "network n {\n  input 8x8x1\n  conv 4 3x3\n  maxpol 2\n}\n")
    out = tmp_path / "typo.dot"
    assert draw(src, out) == 1
    assert "line 4: unknown op `maxpol`" in out.read_text()


def test_syntax_errors_leave_nothing_to_draw(tmp_path, capsys):
    src = write(tmp_path, "bad.cnn", "network n {\n  input 8x8x1\n")
    out = tmp_path / "bad.dot"
    assert draw(src, out) == 1
    assert not out.exists()
    assert "nothing to draw" in capsys.readouterr().err


# ----------------------------------------------------------------------------- usage


def test_dot_output_needs_no_graphviz_but_images_do(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert draw(EXAMPLES / "mnist.cnn", tmp_path / "mnist.dot") == 0
    assert (tmp_path / "mnist.dot").read_text().startswith("digraph mnist {")
    capsys.readouterr()
    for name in ("mnist.png", "mnist.svg", "mnist.pdf"):
        assert draw(EXAMPLES / "mnist.cnn", tmp_path / name) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ")
        assert "apt-get install graphviz" in err and "Traceback" not in err
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize(("out", "fmt", "message"), [
    ("net.jpeg", None, "unknown output extension `.jpeg`"),
    ("net", None, "unknown output extension `net`"),
    ("net.svg", "bmp", "unknown format `bmp`"),
])
def test_unknown_formats_are_usage_errors(tmp_path, capsys, out, fmt, message):
    assert draw(EXAMPLES / "mnist.cnn", tmp_path / out, fmt=fmt) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@needs_dot
def test_format_overrides_the_extension(tmp_path):
    out = tmp_path / "diagram.out"
    assert draw(EXAMPLES / "mnist.cnn", out, fmt="pdf") == 0
    assert out.read_bytes().startswith(b"%PDF")


def test_other_usage_errors(tmp_path, capsys):
    mnist = EXAMPLES / "mnist.cnn"
    assert draw(mnist, tmp_path / "x.dot", rankdir="BT") == 2
    assert draw(mnist, tmp_path / "x.dot", depth=-1) == 2
    assert draw(mnist, tmp_path / "x.dot", network="nope") == 2
    assert draw(tmp_path / "missing.cnn", tmp_path / "x.dot") == 2
    assert draw(mnist, tmp_path / "no" / "such" / "x.dot") == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 5 and all(line.startswith("error: ") for line in lines)
    assert not list(tmp_path.iterdir())


def test_draw_never_imports_tensorflow(tmp_path):
    code = ("import sys; from pathlib import Path; from cnndsl.cli import draw_command; "
            "assert draw_command(Path('examples/mnist.cnn'), Path(sys.argv[1]), None, 'TB', "
            "False, None, None) == 0; "
            "assert not {'tensorflow', 'keras'} & set(sys.modules), 'heavy import'")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "mnist.dot")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mnist.dot").exists()
