"""ticketlab.data: every source read from small files in its real on-disk format, then split and saved.

Images carry a code that the checks read back independently of the reader: either positional (pixel [0,0,0]
= image id, pixel [0,0,1] = label, every other pixel of channel c = 10 + 60c), or, for lossy/resized formats,
constant colours (channel 0 = 20 + 40*label, channel 1 = 8 + 16*id, channel 2 = 200).
"""
import filecmp
import gzip
import os
import pickle
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
from PIL import Image

from ticketlab import data
from ticketlab.data import DataError, load, prepare


# ----------------------------------------------------------------------------- codes and checks
def pixel_images(ids, labels, c=3, h=32, w=32):
    x = np.empty((len(ids), c, h, w), np.uint8)
    x[:] = (10 + 60 * np.arange(c, dtype=np.uint8))[None, :, None, None]
    x[:, 0, 0, 0], x[:, 0, 0, 1] = ids, labels
    return x


def pixel_decode(x):
    assert (x[:, :, 1:, :] == (10 + 60 * np.arange(x.shape[1]))[None, :, None, None]).all(), "channel layout"
    return x[:, 0, 0, 0].astype(int), x[:, 0, 0, 1].astype(int)


def color_image(i, label, size=(12, 10), mode="RGB"):
    return Image.new("RGB", size, (20 + 40 * label, 8 + 16 * i, 200)).convert(mode)


def color_decode(x):
    mid = x[:, :, x.shape[2] // 2, x.shape[3] // 2].astype(float)
    assert np.abs(mid[:, 2] - 200).max() <= 4
    return np.round((mid[:, 1] - 8) / 16).astype(int), np.round((mid[:, 0] - 20) / 40).astype(int)


def mod_labels(ids, mod=10):
    return list(ids), [i % mod for i in ids]


def check(out, train_ids, train_labels, test_ids, test_labels, num_classes, shape, val_fraction=0.1,
          decode=pixel_decode):
    d = load(out)
    assert set(d) == {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "mean", "std", "num_classes"}
    assert d["num_classes"] == num_classes and isinstance(d["num_classes"], int)
    ids, truth = {}, dict(zip(list(train_ids) + list(test_ids), list(train_labels) + list(test_labels)))
    for split in ("train", "val", "test"):
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        assert x.dtype == np.uint8 and y.dtype == np.int64 and x.shape == (len(y), *shape)
        ids[split], labels = decode(x)
        assert (labels == y).all(), f"{split} labels do not match the images"
        assert [truth[i] for i in ids[split]] == list(y), f"{split} labels do not match the source"
    assert len(d["y_val"]) == round(val_fraction * len(train_ids))
    assert sorted([*ids["train"], *ids["val"]]) == sorted(train_ids) and sorted(ids["test"]) == sorted(test_ids)
    x = d["x_train"] / 255.0
    assert d["mean"].dtype == d["std"].dtype == np.float32
    np.testing.assert_allclose(d["mean"], x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d["std"], x.std(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    return d, ids


# ----------------------------------------------------------------------------- writers of the real formats
def write_cifar10(root, n=20):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        ids = np.arange(b * n, (b + 1) * n)
        x = pixel_images(ids, ids % 10)
        with open(base / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(i % 10) for i in ids],
                         b"data": x.reshape(n, 3072), b"filenames": [b"img.png"] * n}, f)
    return (*mod_labels(range(5 * n)), *mod_labels(range(5 * n, 6 * n)))


def write_idx(path, arr, magic, gz):
    buf = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape) + arr.tobytes()
    with (gzip.open if gz else open)(str(path) + (".gz" if gz else ""), "wb") as f:
        f.write(buf)


def write_mnist(d, gz, n_train=30, n_test=10):
    d.mkdir(parents=True, exist_ok=True)
    for prefix, ids in (("train", np.arange(n_train)), ("t10k", np.arange(n_train, n_train + n_test))):
        write_idx(d / f"{prefix}-images-idx3-ubyte", pixel_images(ids, ids % 10, c=1, h=28, w=28)[:, 0], 2051, gz)
        write_idx(d / f"{prefix}-labels-idx1-ubyte", (ids % 10).astype(np.uint8), 2049, gz)
    return (*mod_labels(range(n_train)), *mod_labels(range(n_train, n_train + n_test)))


# ----------------------------------------------------------------------------- sources
def test_cifar10(tmp_path):
    src = write_cifar10(tmp_path / "data")
    s = prepare({"source": "cifar10", "root": str(tmp_path / "data"), "val_fraction": 0.2}, str(tmp_path / "c.npz"))
    assert s["n_train"] == 80 and s["n_val"] == 20 and s["n_test"] == 20 and s["shape"] == [3, 32, 32]
    check(tmp_path / "c.npz", *src, 10, (3, 32, 32), val_fraction=0.2)


def test_cifar100(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    for name, ids in (("train", np.arange(30)), ("test", np.arange(30, 40))):
        labels = (ids * 7) % 100
        with open(base / name, "wb") as f:
            pickle.dump({b"filenames": [b"x"] * len(ids), b"fine_labels": labels.tolist(),
                         b"coarse_labels": (labels // 5).tolist(),
                         b"data": pixel_images(ids, labels).reshape(-1, 3072)}, f)
    prepare({"source": "cifar100", "root": str(tmp_path)}, str(tmp_path / "c.npz"))
    lab = lambda r: [(i * 7) % 100 for i in r]  # noqa: E731
    check(tmp_path / "c.npz", range(30), lab(range(30)), range(30, 40), lab(range(30, 40)), 100, (3, 32, 32))


@pytest.mark.parametrize("gz,torchvision_layout", [(False, True), (True, False)])
def test_mnist(tmp_path, gz, torchvision_layout):
    src = write_mnist(tmp_path / "MNIST" / "raw" if torchvision_layout else tmp_path, gz)
    prepare({"source": "mnist", "root": str(tmp_path), "val_fraction": 0.2}, str(tmp_path / "m.npz"))
    check(tmp_path / "m.npz", *src, 10, (1, 28, 28), val_fraction=0.2)


def test_mnist_bad_magic(tmp_path):
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(30, np.uint8), 2051, gz=False)
    with pytest.raises(DataError, match="magic"):
        prepare({"source": "mnist", "root": str(tmp_path)}, str(tmp_path / "m.npz"))


def test_tinyimagenet(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids, train_ids, train_labels, ann = ["n01443537", "n01629819"], [], [], []
    (root / "test" / "images").mkdir(parents=True)  # unlabelled: ignored
    for label, w in enumerate(wnids):
        (root / "train" / w / "images").mkdir(parents=True)
        for k in range(4):
            i = 4 * label + k
            color_image(i, label, (64, 64)).save(root / "train" / w / "images" / f"{w}_{k}.JPEG", quality=95)
            train_ids.append(i), train_labels.append(label)
    (root / "val" / "images").mkdir(parents=True)
    for i, label in ((8, 1), (9, 0), (10, 1)):
        color_image(i, label, (64, 64)).save(root / "val" / "images" / f"val_{i}.JPEG", quality=95)
        ann.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "val" / "val_annotations.txt").write_text("".join(ann))
    for r in (root, tmp_path):  # the tiny-imagenet-200 directory itself, or its parent
        prepare({"source": "tinyimagenet", "root": str(r), "val_fraction": 0.25}, str(tmp_path / "t.npz"))
        check(tmp_path / "t.npz", train_ids, train_labels, [8, 9, 10], [1, 0, 1], 2, (3, 64, 64), 0.25, color_decode)


def write_class_dirs(d, items):
    for i, label in items:
        (d / f"class_{label}").mkdir(parents=True, exist_ok=True)
        color_image(i, label, mode="RGBA" if i == 0 else "RGB").save(d / f"class_{label}" / f"{i:03d}.png")
    (d / "class_0" / "notes.txt").write_text("not an image")


def test_imagefolder_train_test(tmp_path):
    train, test = [(i, i % 3) for i in range(12)], [(i, i % 3) for i in range(12, 15)]
    write_class_dirs(tmp_path / "train", train)
    write_class_dirs(tmp_path / "test", test)
    spec = {"source": "imagefolder", "root": str(tmp_path), "image_size": 8, "val_fraction": 0.25}
    prepare(spec, str(tmp_path / "f.npz"))
    check(tmp_path / "f.npz", *zip(*train), *zip(*test), 3, (3, 8, 8), 0.25, color_decode)


def test_imagefolder_holdout(tmp_path):
    items = [(i, i % 3) for i in range(15)]
    write_class_dirs(tmp_path / "imgs", items)
    spec = {"source": "imagefolder", "root": str(tmp_path / "imgs"), "test_fraction": 0.2}
    prepare(spec, str(tmp_path / "f.npz"))
    test_ids = sorted(color_decode(load(tmp_path / "f.npz")["x_test"])[0])
    assert len(test_ids) == 3
    train = [it for it in items if it[0] not in test_ids]
    check(tmp_path / "f.npz", *zip(*train), test_ids, [i % 3 for i in test_ids], 3, (3, 32, 32), decode=color_decode)
    prepare({**spec, "split_seed": 5}, str(tmp_path / "g.npz"))  # the test split does not move with split_seed
    assert (load(tmp_path / "g.npz")["x_test"] == load(tmp_path / "f.npz")["x_test"]).all()


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NHW", "float01"])
def test_npz(tmp_path, layout):
    c = 1 if layout == "NHW" else 3
    (tr, ytr), (te, yte) = mod_labels(range(20), 4), mod_labels(range(20, 25), 4)
    xtr, xte = pixel_images(tr, ytr, c=c, h=6, w=5), pixel_images(te, yte, c=c, h=6, w=5)
    conv = {"NHWC": lambda x: x.transpose(0, 2, 3, 1), "NCHW": lambda x: x, "NHW": lambda x: x[:, 0],
            "float01": lambda x: x.transpose(0, 2, 3, 1) / np.float32(255)}[layout]
    np.savez(tmp_path / "in.npz", x_train=conv(xtr), y_train=ytr, x_test=conv(xte), y_test=yte)
    prepare({"source": "npz", "root": str(tmp_path / "in.npz")}, str(tmp_path / "o.npz"))
    check(tmp_path / "o.npz", tr, ytr, te, yte, 4, (c, 6, 5))


@pytest.mark.parametrize("bad", [np.zeros((4, 3, 5, 5), np.int16), np.full((4, 5, 5, 3), 2.0)])
def test_npz_rejects_non_uint8(tmp_path, bad):
    np.savez(tmp_path / "in.npz", x_train=bad, y_train=np.zeros(4, int), x_test=bad, y_test=np.zeros(4, int))
    with pytest.raises(DataError, match="uint8"):
        prepare({"source": "npz", "root": str(tmp_path / "in.npz")}, str(tmp_path / "o.npz"))


def test_digits(tmp_path):
    s = prepare({"source": "digits"}, str(tmp_path / "d.npz"))
    d = load(tmp_path / "d.npz")
    assert s["num_classes"] == d["num_classes"] == 10 and s["shape"] == [1, 8, 8]
    assert len(d["y_test"]) == round(0.2 * 1797) and len(d["y_val"]) == round(0.1 * (1797 - len(d["y_test"])))
    assert len(d["y_train"]) + len(d["y_val"]) + len(d["y_test"]) == 1797
    assert d["x_train"].dtype == np.uint8 and d["x_train"].max() == 255
    assert set(np.unique(d["x_train"])) <= {round(v * 255 / 16) for v in range(17)}
    assert set(d["y_train"]) == set(range(10))


# ----------------------------------------------------------------------------- splits and determinism
def test_split_determinism_and_modes(tmp_path):
    write_cifar10(tmp_path / "data")
    spec = {"source": "cifar10", "root": str(tmp_path / "data")}
    val_ids = {}
    for name, extra in (("a", {}), ("b", {}), ("c", {"split_seed": 1}), ("f", {"val_split": "first"})):
        prepare({**spec, **extra}, str(tmp_path / f"{name}.npz"))
        val_ids[name] = list(pixel_decode(load(tmp_path / f"{name}.npz")["x_val"])[0])
    assert filecmp.cmp(tmp_path / "a.npz", tmp_path / "b.npz", shallow=False)  # byte-identical
    assert val_ids["a"] != val_ids["c"]
    assert val_ids["f"] == list(range(10))


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("source,expected", [("cifar10", "cifar-10-batches-py/data_batch_1"),
                                             ("cifar100", "cifar-100-python/train"),
                                             ("mnist", "MNIST/raw")])
def test_missing_official_data(tmp_path, source, expected):
    with pytest.raises(DataError) as e:
        prepare({"source": source, "root": str(tmp_path)}, str(tmp_path / "o.npz"))
    assert os.path.join(str(tmp_path), expected) in str(e.value) and "download" in str(e.value)


@pytest.mark.parametrize("source,cls", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100"), ("mnist", "MNIST")])
def test_download_offline(tmp_path, monkeypatch, source, cls):
    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(f"torchvision.datasets.{cls}", offline)
    with pytest.raises(DataError, match="download") as e:
        prepare({"source": source, "root": str(tmp_path), "download": True}, str(tmp_path / "o.npz"))
    assert "URLError" in str(e.value) and str(tmp_path) in str(e.value)


def test_download_then_read(tmp_path, monkeypatch):
    calls = []

    def fake_mnist(root, train=True, download=False):
        calls.append(root)
        write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    monkeypatch.setattr("torchvision.datasets.MNIST", fake_mnist)
    prepare({"source": "mnist", "root": str(tmp_path), "download": True}, str(tmp_path / "m.npz"))
    assert calls == [str(tmp_path)] and load(tmp_path / "m.npz")["x_train"].shape[1:] == (1, 28, 28)


@pytest.mark.parametrize("source,root", [("tinyimagenet", "nope/tiny-imagenet-200"), ("imagefolder", "nope"),
                                         ("npz", "nope.npz")])
def test_missing_other_data(tmp_path, source, root):
    with pytest.raises(DataError, match="not found") as e:
        prepare({"source": source, "root": str(tmp_path / root)}, str(tmp_path / "o.npz"))
    assert str(tmp_path / root) in str(e.value)


def test_bad_specs(tmp_path):
    with pytest.raises(DataError, match="unknown dataset source 'imagenet'"):
        prepare({"source": "imagenet"}, str(tmp_path / "o.npz"))
    with pytest.raises(DataError, match="val_split"):
        prepare({"source": "digits", "val_split": "last"}, str(tmp_path / "o.npz"))
    with pytest.raises(DataError, match="root"):
        prepare({"source": "cifar10"}, str(tmp_path / "o.npz"))
    with pytest.raises(DataError, match="not found"):
        load(str(tmp_path / "o.npz"))
    assert sorted(data.SOURCES) == ["cifar10", "cifar100", "digits", "imagefolder", "mnist", "npz", "tinyimagenet"]


@pytest.mark.workflow
def test_load_does_not_import_heavy_libraries():
    code = "import sys, ticketlab.data; assert not {'torchvision', 'sklearn', 'PIL'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
