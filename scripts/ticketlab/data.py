"""Datasets: prepare each one ONCE into a compact .npz with a fixed train/val/test split, then load it fast.

``prepare(spec, out_path)`` reads a source in its real on-disk format (small readers of the standard formats,
not torchvision's dataset classes, which insist on the md5 sums of the official files), splits a seeded
validation set off the training split, computes per-channel mean/std on the remaining training images and
writes ``x_train, y_train, x_val, y_val, x_test, y_test`` (x uint8 NCHW, y int64), ``mean``, ``std``
(float32, on [0, 1]) and ``num_classes``. ``load(path)`` reads it back. Heavy imports (torchvision, sklearn,
PIL) stay inside the source functions, so training jobs that only ``load`` never import them.

Each source is ``SOURCES[name](spec) -> (x_train, y_train, x_test, y_test, num_classes)``.
"""
from __future__ import annotations

import functools
import glob
import gzip
import os
import pickle
import zipfile

import numpy as np

from .registry import Registry

SOURCES = Registry("dataset source")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
NETWORK_HINT = "or set download: true on a machine with network"


class DataError(RuntimeError):
    """A dataset is missing, malformed or mis-specified; the message says what was expected where."""


# ----------------------------------------------------------------------------- common helpers
def _root(spec: dict) -> str:
    if not spec.get("root"):
        raise DataError(f"dataset source {spec.get('source')!r} needs a 'root' (directory or file path)")
    return os.path.expanduser(str(spec["root"]))


def _split(n: int, k: int, seed: int, first: bool = False):
    """Indices (rest, picked) with k picked: the first k if ``first``, else a seeded random k; both sorted."""
    idx = np.arange(n) if first else np.random.default_rng(seed).permutation(n)
    return np.sort(idx[k:]), np.sort(idx[:k])


def _holdout(x, y, spec):
    """Seeded test split for sources without an official one. The seed (``test_seed``, default 0) is
    independent of ``split_seed`` so that every split_seed is evaluated on the same test set."""
    train, test = _split(len(x), round(float(spec.get("test_fraction", 0.2)) * len(x)), int(spec.get("test_seed", 0)))
    return x[train], y[train], x[test], y[test]


def _ensure(spec, find, expected: str, fetch):
    """``find()`` returns the data files or None; when None, optionally fetch via torchvision, else DataError."""
    found = find()
    if found is None and spec.get("download"):
        try:
            fetch()
        except Exception as e:  # offline: URLError / OSError / RuntimeError from torchvision
            raise DataError(f"{spec['source']}: download into {_root(spec)} failed ({type(e).__name__}: {e}). "
                            f"Without network, {expected}") from e
        found = find()
    if found is None:
        raise DataError(f"{spec['source']}: data not found. {expected}, {NETWORK_HINT}")
    return found


def _read_images(paths, size: int) -> np.ndarray:
    """Read image files as RGB, resized to size x size where needed, into uint8 NCHW."""
    from PIL import Image
    x = np.empty((len(paths), 3, size, size), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            x[i] = np.asarray(im).transpose(2, 0, 1)
    return x


def _as_uint8_nchw(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{name}: expected images NHW, NHWC or NCHW with 1 or 3 channels, got shape {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating) and x.size and 0.0 <= x.min() and x.max() <= 1.0:
        return np.round(x * 255.0).astype(np.uint8)
    lo, hi = (x.min(), x.max()) if x.size else (None, None)
    raise DataError(f"{name}: images must be uint8 (0..255) or floats in [0, 1]; got {x.dtype} in [{lo}, {hi}]")


def _mean_std(x: np.ndarray):
    """Per-channel mean/std of x/255, exact and light on memory via a 256-bin histogram per channel."""
    v = np.arange(256) / 255.0
    h = np.stack([np.bincount(x[:, c].ravel(), minlength=256) for c in range(x.shape[1])]) / (x[:, 0].size)
    mean = h @ v
    std = np.sqrt((h * (v - mean[:, None]) ** 2).sum(1))
    return mean.astype(np.float32), std.astype(np.float32)


def _save(path: str, arrays: dict) -> None:
    """Like np.savez, but with fixed zip timestamps (identical data -> identical bytes) and an atomic rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with zipfile.ZipFile(tmp, "w") as zf:
        for key, val in arrays.items():
            with zf.open(zipfile.ZipInfo(key + ".npy", (1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(val), allow_pickle=False)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- public API
def prepare(spec: dict, out_path: str) -> dict:
    """Read ``spec['source']``, split, and write ``out_path`` (.npz); return a small summary dict."""
    try:
        source = SOURCES.get(spec.get("source"))
    except KeyError as e:
        raise DataError(e.args[0]) from None
    x_tr, y_tr, x_te, y_te, num_classes = source(spec)
    for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != x_tr.shape[1:] or len(x) != len(y):
            raise DataError(f"{spec['source']}: bad {name} split: x {x.dtype}{x.shape}, y {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(f"{spec['source']}: {name} labels outside [0, {num_classes})")

    val_fraction, mode = float(spec.get("val_fraction", 0.1)), spec.get("val_split", "random")
    if mode not in ("random", "first"):
        raise DataError(f"val_split must be 'random' or 'first', got {mode!r}")
    n_val = round(val_fraction * len(x_tr))
    if not 0.0 <= val_fraction < 1.0 or n_val >= len(x_tr):
        raise DataError(f"val_fraction={val_fraction} leaves no training images (n_train={len(x_tr)})")
    tr, va = _split(len(x_tr), n_val, int(spec.get("split_seed", 0)), first=(mode == "first"))
    mean, std = _mean_std(x_tr[tr])
    _save(out_path, dict(x_train=x_tr[tr], y_train=y_tr[tr].astype(np.int64), x_val=x_tr[va],
                         y_val=y_tr[va].astype(np.int64), x_test=x_te, y_test=y_te.astype(np.int64),
                         mean=mean, std=std, num_classes=np.int64(num_classes)))
    return {"source": spec["source"], "n_train": len(tr), "n_val": len(va), "n_test": len(x_te),
            "num_classes": int(num_classes), "shape": list(x_tr.shape[1:]),
            "mean": [round(float(m), 4) for m in mean], "std": [round(float(s), 4) for s in std]}


def load(path: str) -> dict:
    """The prepared arrays as a plain dict of numpy arrays (``num_classes`` as int)."""
    if not os.path.isfile(path):
        raise DataError(f"prepared dataset {path} not found; run the prepare_data rule first")
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    data["num_classes"] = int(data["num_classes"])
    return data


# ----------------------------------------------------------------------------- sources
@SOURCES.register("digits")
def _digits(spec):
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
    d = load_digits()
    x = np.round(d.images * 255.0 / 16.0).astype(np.uint8)[:, None]
    return (*_holdout(x, d.target.astype(np.int64), spec), 10)


# name -> (title, folder, tarball, train files, test files, label key, classes, torchvision class)
_CIFAR = {
    "cifar10": ("CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10, "CIFAR10"),
    "cifar100": ("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
                 ["train"], ["test"], "fine_labels", 100, "CIFAR100"),
}


def _read_cifar(paths, label_key):
    xs, ys = [], []
    for p in paths:
        with open(p, "rb") as f:  # latin1 unpickles both the official (py2) files and py3 re-pickles
            d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in pickle.load(f, encoding="latin1").items()}
        xs.append(np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key], np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _cifar(name, spec):
    title, folder, tarball, train_files, test_files, label_key, k, tv_class = _CIFAR[name]
    root = _root(spec)
    paths = [os.path.join(root, folder, f) for f in train_files + test_files]

    def fetch():
        from torchvision import datasets
        getattr(datasets, tv_class)(root, train=True, download=True)

    expected = (f"Expected {paths}: put the python version of {title} ({tarball}, extracted) "
                f"so that {paths[0]} exists")
    _ensure(spec, lambda: paths if all(map(os.path.isfile, paths)) else None, expected, fetch)
    return (*_read_cifar(paths[:len(train_files)], label_key), *_read_cifar(paths[len(train_files):], label_key), k)


for _name in _CIFAR:
    SOURCES.register(_name)(functools.partial(_cifar, _name))

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _read_idx(path: str, magic: int) -> np.ndarray:
    """IDX file (optionally .gz): 4-byte big-endian magic (0x0000 0x08=ubyte ndim), ndim big-endian sizes, data."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        buf = f.read()
    got = int.from_bytes(buf[:4], "big")
    if got != magic:
        raise DataError(f"{path}: IDX magic number {got:#010x}, expected {magic:#010x}")
    ndim = buf[3]
    dims = [int.from_bytes(buf[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} bytes (truncated file?)")
    return data.reshape(dims)


@SOURCES.register("mnist")
def _mnist(spec):
    root = _root(spec)
    dirs = [os.path.join(root, "MNIST", "raw"), root]

    def find():
        for d in dirs:
            found = [next((p for p in (os.path.join(d, f), os.path.join(d, f + ".gz")) if os.path.isfile(p)), None)
                     for f in MNIST_FILES]
            if all(found):
                return found
        return None

    def fetch():
        from torchvision import datasets
        datasets.MNIST(root, train=True, download=True)

    expected = (f"Expected the four MNIST IDX files {list(MNIST_FILES)} (plain or .gz) in {dirs[0]} or {dirs[1]}: "
                f"put them there")
    xtr, ytr, xte, yte = _ensure(spec, find, expected, fetch)
    return (_read_idx(xtr, 2051)[:, None], _read_idx(ytr, 2049).astype(np.int64),
            _read_idx(xte, 2051)[:, None], _read_idx(yte, 2049).astype(np.int64), 10)


@SOURCES.register("tinyimagenet")
def _tinyimagenet(spec):
    root = _root(spec)
    if not os.path.isfile(os.path.join(root, "wnids.txt")) and os.path.isdir(os.path.join(root, "tiny-imagenet-200")):
        root = os.path.join(root, "tiny-imagenet-200")
    wnids_file, ann_file = os.path.join(root, "wnids.txt"), os.path.join(root, "val", "val_annotations.txt")
    for p in (wnids_file, ann_file):
        if not os.path.isfile(p):
            raise DataError(f"tinyimagenet: {p} not found; extract tiny-imagenet-200.zip "
                            f"(http://cs231n.stanford.edu/tiny-imagenet-200.zip) so that {root} is its top directory")
    with open(wnids_file) as f:
        wnids = [w.strip() for w in f if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    train = [(p, i) for i, w in enumerate(wnids)
             for p in sorted(glob.glob(os.path.join(root, "train", w, "images", "*.JPEG")))]
    test = []
    with open(ann_file) as f:
        for line in filter(str.strip, f):
            fname, wnid = line.split("\t")[:2]
            if wnid not in index:
                raise DataError(f"tinyimagenet: {ann_file} names {wnid!r}, which is not in {wnids_file}")
            test.append((os.path.join(root, "val", "images", fname), index[wnid]))
    if not train:
        raise DataError(f"tinyimagenet: no training images under {os.path.join(root, 'train', '<wnid>', 'images')}")
    (ptr, ytr), (pte, yte) = zip(*train), zip(*test)
    return _read_images(ptr, 64), np.array(ytr, np.int64), _read_images(pte, 64), np.array(yte, np.int64), len(wnids)


def _scan_folder(d: str, classes: list[str]):
    extra = sorted(set(e.name for e in os.scandir(d) if e.is_dir()) - set(classes))
    if extra:
        raise DataError(f"imagefolder: {d} has class directories {extra} that the training split lacks")
    items = [(os.path.join(d, c, f), i) for i, c in enumerate(classes) if os.path.isdir(os.path.join(d, c))
             for f in sorted(os.listdir(os.path.join(d, c))) if f.lower().endswith(IMAGE_EXTS)]
    if not items:
        raise DataError(f"imagefolder: no images ({', '.join(IMAGE_EXTS)}) in the class directories of {d}")
    paths, labels = zip(*items)
    return list(paths), np.array(labels, np.int64)


@SOURCES.register("imagefolder")
def _imagefolder(spec):
    root, size = _root(spec), int(spec.get("image_size", 32))
    if not os.path.isdir(root):
        raise DataError(f"imagefolder: directory {root} not found (expected one sub-directory per class, "
                        f"optionally inside train/ and test/)")
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    has_split = os.path.isdir(train_dir) and os.path.isdir(test_dir)
    base = train_dir if has_split else root
    classes = sorted(e.name for e in os.scandir(base) if e.is_dir())
    paths, y = _scan_folder(base, classes)
    x = _read_images(paths, size)
    if has_split:
        test_paths, y_test = _scan_folder(test_dir, classes)
        return x, y, _read_images(test_paths, size), y_test, len(classes)
    return (*_holdout(x, y, spec), len(classes))


@SOURCES.register("npz")
def _npz(spec):
    path = _root(spec)
    if not os.path.isfile(path):
        raise DataError(f"npz: file {path} not found (expected a .npz with x_train, y_train, x_test, y_test)")
    with np.load(path, allow_pickle=False) as f:
        missing = sorted({"x_train", "y_train", "x_test", "y_test"} - set(f.files))
        if missing:
            raise DataError(f"npz: {path} lacks arrays {missing} (has {sorted(f.files)})")
        xs = [_as_uint8_nchw(f[k], f"{path}:{k}") for k in ("x_train", "x_test")]
        ys = [f[k].ravel() for k in ("y_train", "y_test")]
        if not all(np.issubdtype(y.dtype, np.integer) for y in ys):
            raise DataError(f"npz: {path}: labels must be integers, got {[y.dtype for y in ys]}")
        ys = [y.astype(np.int64) for y in ys]
        k = int(f["num_classes"]) if "num_classes" in f.files else int(max(y.max(initial=-1) for y in ys)) + 1
    return xs[0], ys[0], xs[1], ys[1], k
