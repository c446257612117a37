"""Training data: keras.datasets by name (with offline fallbacks), .npz files, IDX folders;
and matching images and labels to a network before anything trains."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cnndsl.common.limits import MAX_DATA_BYTES

BUNDLED_MNIST = Path(__file__).parent.parent / "data" / "mnist-5k.npz"
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset package
TEST_FRACTION = 0.2
SPLIT_SEED = 0  # fixed: the same file always splits the same way


class DataError(Exception):
    """Data that cannot be loaded, or that does not fit the network: one line for the user."""


@dataclass(frozen=True)
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str  # what was loaded, for messages and metrics.json

    @property
    def image_shape(self) -> tuple[int, ...]:
        x = self.x_train
        return tuple(next(iter(x.values())).shape[1:] if isinstance(x, dict) else x.shape[1:])


# ----------------------------------------------------------------------------- loading


def load(dataset: str, path: Path | None = None,
         notify: Callable[[str], object] = print) -> Data:
    """`path` (an .npz or an IDX folder) when given, else the named keras dataset."""
    if path is not None:
        return load_path(path)
    return load_named(dataset, notify)


def load_named(name: str, notify: Callable[[str], object] = print) -> Data:
    """keras.datasets.<name>: downloaded or cached; offline, a local copy where one exists."""
    from cnndsl.backends.runtime import import_keras

    keras = import_keras()
    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
        return Data(x_train, y_train, x_test, y_test, name)
    except Exception as err:  # keras raises a bare Exception for a failed download
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        fallback = _offline_fallback(name)
        if fallback is None:
            raise DataError(f"cannot load the `{name}` dataset ({reason}); download it on a "
                            "machine with internet, or give the data with --data PATH") from err
        data, notice = fallback
        notify(f"`{name}` could not be downloaded; {notice}")
        return data


def _offline_fallback(name: str) -> tuple[Data, str] | None:
    if name == "mnist" and BUNDLED_MNIST.exists():
        data = load_npz(BUNDLED_MNIST)
        return replace(data, name="mnist-5k"), (
            f"using the bundled 5,000-image MNIST sample ({len(data.x_train):,} train, "
            f"{len(data.x_test):,} test)")
    if name == "fashion_mnist" and SYSTEM_FASHION_MNIST.is_dir():
        return (replace(load_idx_folder(SYSTEM_FASHION_MNIST), name="fashion_mnist"),
                f"using the local copy in {SYSTEM_FASHION_MNIST}")
    return None


def load_path(path: Path) -> Data:
    if path.is_dir():
        return load_idx_folder(path)
    if not path.exists():
        raise DataError(f"cannot read `{path}`: no such file or folder")
    if not path.is_file():  # a device or a pipe would be read without end, or block
        raise DataError(f"`{path}` is not a regular file (a device or a pipe?)")
    if path.suffix != ".npz":
        raise DataError(f"`{path}` is neither an .npz file nor a folder of IDX files")
    return load_npz(path)


def load_npz(path: Path) -> Data:
    """Keys x_train, y_train, x_test, y_test; or x, y (shuffled, then split 80/20)."""
    arrays = _npz_arrays(path)
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        data = Data(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                    path.name)
    elif {"x", "y"} <= arrays.keys():
        for name in ("x", "y"):
            _check_values(name, arrays[name], path)
        data = split(arrays["x"], arrays["y"], path.name)
    else:
        raise DataError(f"`{path}` has keys {', '.join(sorted(arrays)) or 'none'}; expected "
                        "x_train, y_train, x_test, y_test (or x, y)")
    _check_lengths(data, path)
    return data


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, each checked against its declared size before it is read."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                _check_npy_header(path, info.filename, archive.open(info), info.file_size)
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except zipfile.BadZipFile as err:
        with open(path, "rb") as f:
            npy = f.read(6) == b"\x93NUMPY"
        if npy:
            raise DataError(f"`{path}` is an .npy file (one array) renamed .npz; save the "
                            "arrays with numpy.savez (x_train, y_train, x_test, y_test)") from err
        empty = path.stat().st_size == 0
        raise DataError(f"`{path}` is {'empty' if empty else 'not a whole .npz file'} "
                        f"({'0 bytes' if empty else err}); an .npz is a zip of .npy "
                        "arrays, as numpy.savez writes it") from err
    except (OSError, ValueError, EOFError, KeyError, MemoryError) as err:
        raise DataError(f"cannot read `{path}`: {err or type(err).__name__}") from err


def _check_npy_header(path: Path, name: str, member: BinaryIO, stored: int) -> None:
    from numpy.lib import format as npy

    if not name.endswith(".npy"):
        return
    version = npy.read_magic(member)
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, _, dtype = read(member)
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_DATA_BYTES:
        raise DataError(f"`{path}`: `{name}` declares {size / 1024**3:.1f} GB, over the "
                        f"{MAX_DATA_BYTES // 1024**3} GB limit for one array")
    if size > stored:
        raise DataError(f"`{path}`: `{name}` is cut short (its header declares "
                        f"{'x'.join(map(str, shape))})")


def split(x: np.ndarray, y: np.ndarray, name: str) -> Data:
    """A deterministic shuffle, then 80% train and 20% test (sorted files need the shuffle)."""
    if len(x) != len(y):
        raise DataError(f"`{name}` has {len(x)} images but {len(y)} labels")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = math.ceil(len(x) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return Data(x[train], y[train], x[test], y[test], name)


def _check_values(name: str, a: np.ndarray, where: Path) -> None:
    """Numbers only, in arrays of one row per example, none NaN or infinite."""
    if a.ndim == 0:
        raise DataError(f"`{where}`: `{name}` is a single value, not one row per example")
    if a.dtype.kind not in "biuf":
        kind = {"M": "dates", "m": "time spans", "U": "text", "S": "bytes", "O": "objects",
                "c": "complex numbers", "V": "records"}.get(a.dtype.kind, str(a.dtype))
        raise DataError(f"`{where}`: `{name}` holds {kind}, not numbers")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DataError(f"`{where}`: `{name}` holds NaN or infinite values")


def _check_lengths(data: Data, where: Path) -> None:
    for name in ("x_train", "y_train", "x_test", "y_test"):
        _check_values(name, getattr(data, name), where)
    for part in ("train", "test"):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        if len(x) != len(y):
            raise DataError(f"`{where}` has {len(x)} {part} images but {len(y)} labels")
        if len(x) == 0:
            raise DataError(f"`{where}` has no {part} images")


# ----------------------------------------------------------------------------- IDX

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {
    "x_train": ("train-images",),
    "y_train": ("train-labels",),
    "x_test": ("t10k-images", "test-images"),
    "y_test": ("t10k-labels", "test-labels"),
}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (the MNIST format), gzipped or not. The header's sizes are checked
    before the payload is read, and no more than they declare is read (or inflated)."""
    if not path.is_file():
        raise DataError(f"`{path}` is not a regular file (a device or a pipe?)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return _idx_payload(path, f)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read `{path}`: {err}") from err


def _read_at_most(f: BinaryIO, limit: int, chunk: int = 16 * 1024**2) -> bytes:
    """Up to `limit` bytes, in chunks: a header that lies about a small file's size costs
    no memory beyond what the file really holds (or inflates to, for gzip)."""
    parts, total = [], 0
    while total < limit and (part := f.read(min(chunk, limit - total))):
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _idx_payload(path: Path, f: BinaryIO) -> np.ndarray:
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
        raise DataError(f"`{path}` is not an IDX file")
    ndim = magic[3]
    if not 1 <= ndim <= 4:  # labels, images, colour images, a batch of those
        raise DataError(f"`{path}` is damaged: its header declares {ndim} dimensions")
    header = f.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise DataError(f"`{path}` is damaged: its header is cut short")
    dims = struct.unpack(f">{ndim}I", header)
    dtype = np.dtype(_IDX_TYPES[magic[2]])
    size = math.prod(dims) * dtype.itemsize
    shape = "x".join(map(str, dims))
    if size > MAX_DATA_BYTES:
        raise DataError(f"`{path}` declares {shape} values ({size / 1024**3:.1f} GB), over "
                        f"the {MAX_DATA_BYTES // 1024**3} GB limit for one array")
    body = _read_at_most(f, size + 1)  # one more: a longer payload is refused too
    if len(body) != size:
        what = "truncated" if len(body) < size else "longer than its header declares"
        raise DataError(f"`{path}` is {what}: its header promises {shape}")
    array = np.frombuffer(body, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def load_idx_folder(folder: Path) -> Data:
    files = {}
    for key, stems in _IDX_NAMES.items():
        found = [p for p in sorted(folder.iterdir())
                 if any(p.name.startswith(s) for s in stems) and "idx" in p.name]
        if not found:
            raise DataError(f"`{folder}` has no `{stems[0]}-idx...` file (expected the MNIST "
                            "layout: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte, "
                            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)")
        files[key] = read_idx(found[0])
    data = Data(name=folder.name, **files)
    _check_lengths(data, folder)
    return data


# ----------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Prepared:
    """Data ready for a network: float images in [0, 1], labels in the loss's form."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    loss: str
    classes: int


def _images(x: np.ndarray, input_shape: tuple[int, ...], what: str) -> np.ndarray:
    if x.ndim == len(input_shape) and input_shape[-1] == 1:
        x = x[..., None]  # (N, 28, 28) greyscale -> (N, 28, 28, 1)
    if tuple(x.shape[1:]) != tuple(input_shape):
        got = "x".join(map(str, x.shape[1:]))
        want = "x".join(map(str, input_shape))
        raise DataError(f"the {what} images are {got} but the network's input is {want}")
    if np.issubdtype(x.dtype, np.integer):
        scaled = x.astype(np.float32)
        scaled /= 255  # pixels 0..255 to [0, 1], as the seeds scale them (in place: no copy)
        return scaled
    return x.astype(np.float32, copy=False)


def _classes(y: np.ndarray) -> tuple[np.ndarray, bool]:
    """Labels and whether they are one-hot (rows of width > 1)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.equal(np.mod(y, 1), 0)):
                raise DataError("the labels are neither class numbers nor one-hot rows")
            y = y.astype(np.int64)
        if y.size and y.min() < 0:
            raise DataError("the labels include negative class numbers")
        return y.astype(np.int64, copy=False), False
    if y.ndim == 2:
        return y.astype(np.float32, copy=False), True
    raise DataError(f"the labels have shape {y.shape}; expected (N,) or (N, classes)")


SPARSE = {"categorical_crossentropy": "sparse_categorical_crossentropy"}


def prepare(data: Data, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
            loss: str) -> Prepared:
    """Check the data against the network and put it in the form the loss needs.

    Integer labels with a categorical loss switch to its sparse twin (the same numbers,
    without one-hot arrays); one-hot labels with a sparse loss become class numbers.
    """
    x_train = _images(data.x_train, input_shape, "training")
    x_test = _images(data.x_test, input_shape, "test")
    y_train, y_test, loss, classes = _labels(data, output_shape, loss)
    return Prepared(x_train, y_train, x_test, y_test, loss, classes)


def _labels(data: Data, output_shape: tuple[int, ...], loss: str
            ) -> tuple[np.ndarray, np.ndarray, str, int]:
    """The labels in the form `loss` needs for an output of `output_shape`, that loss
    (perhaps its sparse twin) and the number of classes."""
    y_train, one_hot = _classes(data.y_train)
    y_test, test_one_hot = _classes(data.y_test)
    if one_hot != test_one_hot:
        raise DataError("the training labels and the test labels are in different forms")
    classes = y_train.shape[1] if one_hot else int(max(y_train.max(), y_test.max())) + 1
    units = output_shape[-1] if output_shape else 1
    binary = loss == "binary_crossentropy" and units == 1 and classes <= 2
    if len(output_shape) != 1 or (units != classes and not binary):
        shape = "x".join(map(str, output_shape))
        raise DataError(f"the data has {classes} classes but the network's output is {shape}"
                        f"{'' if len(output_shape) == 1 else ' (not one axis: add `flatten`)'}"
                        f"; make the last layer `dense {classes} softmax`")
    if not one_hot and loss in SPARSE:
        loss = SPARSE[loss]
    elif one_hot and loss == "sparse_categorical_crossentropy":
        y_train, y_test = y_train.argmax(1), y_test.argmax(1)
    elif not one_hot and loss not in ("sparse_categorical_crossentropy", "binary_crossentropy"):
        eye = np.eye(classes, dtype=np.float32)  # losses like mse need one-hot targets
        y_train, y_test = eye[y_train], eye[y_test]
    return y_train, y_test, loss, classes


def describe(data: Data) -> str:
    shape = "x".join(map(str, data.image_shape))
    return f"{data.name}: {len(data.x_train):,} train + {len(data.x_test):,} test images, {shape}"


# ----------------------------------------------------------------------------- several inputs


def load_inputs(path: Path, inputs: list[str]) -> Data:
    """An .npz for a network with several inputs: an array per input, named after it,
    `x_NAME_train` and `x_NAME_test` with `y_train` and `y_test`, or `x_NAME` with `y`
    (shuffled, then split 80/20 as `x`, `y` are). The images are {input name: array}."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read `{path}`: {err}") from err
    split_given = {"y_train", "y_test"} <= arrays.keys()
    if not split_given and "y" not in arrays:
        raise DataError(f"`{path}` has no labels: expected arrays `y` (or `y_train` and "
                        "`y_test`)")
    parts = ("_train", "_test") if split_given else ("",)
    for name in inputs:
        for key in (f"x_{name}{part}" for part in parts):
            if key not in arrays:
                raise DataError(f"`{path}` has no array `{key}` for the input `{name}` (it "
                                f"has {', '.join(sorted(arrays))})")
    if split_given:
        data = Data({n: arrays[f"x_{n}_train"] for n in inputs}, arrays["y_train"],
                    {n: arrays[f"x_{n}_test"] for n in inputs}, arrays["y_test"], path.name)
    else:
        order = np.random.default_rng(SPLIT_SEED).permutation(len(arrays["y"]))
        n_test = math.ceil(len(order) * TEST_FRACTION)
        test, train = order[:n_test], order[n_test:]
        for n in inputs:
            if len(arrays[f"x_{n}"]) != len(order):
                raise DataError(f"`{path}` has {len(arrays[f'x_{n}'])} `x_{n}` images but "
                                f"{len(order)} labels")
        data = Data({n: arrays[f"x_{n}"][train] for n in inputs}, arrays["y"][train],
                    {n: arrays[f"x_{n}"][test] for n in inputs}, arrays["y"][test], path.name)
    for part in ("train", "test"):
        for n, x in getattr(data, f"x_{part}").items():
            if len(x) != len(getattr(data, f"y_{part}")):
                raise DataError(f"`{path}` has {len(x)} {part} `{n}` images but "
                                f"{len(getattr(data, f'y_{part}'))} labels")
    return data


def prepare_ports(data: Data, inputs: list[tuple[str, tuple[int, ...]]],
                  outputs: list[tuple[str, tuple[int, ...], str]]) -> Prepared:
    """Data for a network with several inputs or outputs: images per input (in order), and
    the one label set in the form each output's loss needs (so `loss` is a list)."""
    def images(x: np.ndarray | dict[str, np.ndarray], part: str) -> list[np.ndarray]:
        if not isinstance(x, dict):
            return [_images(x, inputs[0][1], part)]
        return [_images(x[name], shape, f"{part} `{name}`") for name, shape in inputs]

    x_train, x_test = images(data.x_train, "training"), images(data.x_test, "test")
    labels = [_labels(data, shape, loss) for _, shape, loss in outputs]
    # One input or output stays an array, not a list of one, as Keras takes it.
    one = lambda items: items[0] if len(items) == 1 else items  # noqa: E731
    return Prepared(one(x_train), one([y[0] for y in labels]), one(x_test),
                    one([y[1] for y in labels]), one([y[2] for y in labels]),
                    labels[0][3])


# ----------------------------------------------------------------------------- for a network


def for_network(dataset: str, path: Path | None, analysis: Any, losses: Mapping[str, str],
                loss: str, notify: Callable[[str], object] = print) -> tuple[Prepared, Data]:
    """The data the analysed network trains on, prepared for its inputs and outputs:
    `dataset` by name or the file at `path`; `losses` are per-output losses, `loss` the
    default. Several inputs need an .npz with an array per input; several outputs are each
    fed the one label set."""
    outputs = output_losses(analysis, losses, loss)
    if not several_ports(analysis):
        data = load(dataset, path, notify)
        return prepare(data, analysis.input_shape, analysis.output_shape, outputs[0][2]), data
    graph = analysis.graph
    names = [p.name for p in graph.inputs]
    if len(names) > 1:
        if path is None:
            arrays = ", ".join(f"x_{n}" for n in names)
            raise DataError(f"network `{graph.network}` has {len(names)} inputs "
                            f"({', '.join(names)}): give `--data FILE.npz` with the arrays "
                            f"{arrays} and y")
        data = load_inputs(path, names)
    else:
        data = load(dataset, path, notify)
    inputs = [(p.name, analysis.layers[p.node].shape) for p in graph.inputs]
    return prepare_ports(data, inputs, outputs), data


def examples(x: Any) -> int:
    """How many examples prepared images hold (a list holds an array per input)."""
    return len(x[0]) if isinstance(x, list) else len(x)


def several_ports(analysis: Any) -> bool:
    return len(analysis.graph.inputs) > 1 or len(analysis.graph.outputs) > 1


def output_losses(analysis: Any, losses: Mapping[str, str], loss: str
                  ) -> list[tuple[str, Any, str]]:
    """Each output's name, shape and loss (its own, else the section's `loss`)."""
    return [(p.name, analysis.layers[p.node].shape, losses.get(p.name, loss))
            for p in analysis.graph.outputs]
