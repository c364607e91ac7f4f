"""Tests for fspbench.data: real Fashion-MNIST, tiny CIFAR/CUB files in the official layouts."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fspbench import data as D
from fspbench.errors import BadInput


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No downloads, no user data folders, an empty home cache, and a fresh decode cache."""
    monkeypatch.setenv("FSPBENCH_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FSPBENCH_DATA", raising=False)
    monkeypatch.delenv("FSPBENCH_SYSTEM_DATA", raising=False)
    D.clear_cache()
    yield
    D.clear_cache()


def toy(images: torch.Tensor, labels: torch.Tensor | None = None) -> D.TaskData:
    """A TaskData around hand-made uint8 images (N, C, H, W); labels default to image ids."""
    n, c, h, _ = images.shape
    y = torch.arange(n) if labels is None else labels
    mean, std = torch.full((1, c, 1, 1), 100.0), torch.full((1, c, 1, 1), 50.0)
    return D.TaskData("toy", int(y.max()) + 1, c, h, mean, std, images, y, images[:10], y[:10], "mem")


def pixels(x: torch.Tensor, data: D.TaskData) -> torch.Tensor:
    """Undo normalisation, back to 0..255 pixel values."""
    return (x * data.std + data.mean).round()


# ---- real Fashion-MNIST ------------------------------------------------------------------------

def test_fashion_mnist_full():
    d = D.load_task("fashion-mnist")
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert d.train_y.unique().tolist() == list(range(10)) == d.test_y.unique().tolist()
    assert d.train_y.bincount().tolist() == [6000] * 10
    assert d.source == "/usr/share/datasets/fashion-mnist"
    assert d.mean.shape == (1, 1, 1, 1) and d.num_classes == 10


def test_fashion_mnist_class_subset():
    full = D.load_task("fashion-mnist")
    d = D.load_task("fashion-mnist", classes=[5, 6, 7, 8, 9], train_per_class=100)
    assert d.num_classes == 5 and d.train_x.shape == (500, 1, 28, 28)
    assert d.train_y.bincount().tolist() == [100] * 5
    assert d.test_x.shape[0] == 5000
    for new, old in enumerate(range(5, 10)):  # relabelled in the order of `classes`
        assert torch.equal(d.test_x[d.test_y == new], full.test_x[full.test_y == old])
    assert torch.equal(d.train_x, D.load_task("fashion-mnist", classes=[5, 6, 7, 8, 9],
                                              train_per_class=100).train_x)
    other = D.load_task("fashion-mnist", classes=[5, 6, 7, 8, 9], train_per_class=100, subset_seed=1)
    assert not torch.equal(d.train_x, other.train_x)
    # A class keeps the same images whatever else is kept; the order of `classes` sets the labels.
    rev = D.load_task("fashion-mnist", classes=[9, 5], train_per_class=100)
    assert torch.equal(rev.train_x[rev.train_y == 1], d.train_x[d.train_y == 0])
    assert torch.equal(rev.test_x[rev.test_y == 0], d.test_x[d.test_y == 4])


# ---- BatchStream -----------------------------------------------------------------------------

def test_stream_same_seed_same_batches():
    d = toy(torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8))
    a, b, c = (D.BatchStream(d, 16, s, hflip=True) for s in (7, 7, 8))
    for _ in range(6):  # crosses epoch boundaries
        (xa, ya), (xb, yb), (xc, yc) = a.next(), b.next(), c.next()
        assert xa.dtype == torch.float32 and xa.shape == (16, 3, 8, 8) and ya.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(ya, yc) or not torch.equal(xa, xc)


def test_crop_is_a_shift_with_zero_padding():
    img = torch.full((1, 1, 28, 28), 200, dtype=torch.uint8)
    img[0, 0, 14, 14] = 255
    d = toy(img.expand(64, -1, -1, -1).clone(), torch.zeros(64, dtype=torch.long))
    x, _ = D.BatchStream(d, 64, seed=3).next()
    px = pixels(x, d)
    shifts = set()
    for out in px[:, 0]:
        (r, c), = torch.nonzero(out == 255).tolist()
        dy, dx = 14 - r, 14 - c  # the crop window moved by (dy, dx)
        assert -4 <= dy <= 4 and -4 <= dx <= 4
        shifts.add((dy, dx))
        expected = torch.zeros(28, 28)  # zeros where the window left the image
        src = torch.full((28, 28), 200.0)
        src[14, 14] = 255
        rows, cols = slice(max(0, -dy), min(28, 28 - dy)), slice(max(0, -dx), min(28, 28 - dx))
        expected[rows, cols] = src[max(0, dy) : min(28, 28 + dy), max(0, dx) : min(28, 28 + dx)]
        assert torch.equal(out, expected)
    assert len(shifts) > 10


def test_hflip_flips():
    img = torch.randint(0, 256, (32, 2, 6, 6), dtype=torch.uint8)
    d = toy(img)
    x, y = D.BatchStream(d, 32, seed=0, augment=False, hflip=True).next()
    px, src = pixels(x, d), img[y].float()
    flipped = torch.tensor([torch.equal(p, s.flip(-1)) for p, s in zip(px, src, strict=True)])
    same = torch.tensor([torch.equal(p, s) for p, s in zip(px, src, strict=True)])
    assert torch.all(flipped | same) and flipped.any() and same.any()
    x, y = D.BatchStream(d, 32, seed=0, augment=False).next()
    assert torch.equal(pixels(x, d), img[y].float())  # nothing changes without augmentation


def test_epoch_visits_each_image_once():
    d = toy(torch.zeros(105, 1, 4, 4, dtype=torch.uint8))
    s = D.BatchStream(d, 10, seed=1)
    assert s.steps_per_epoch == 10
    for epoch in range(3):
        ids = torch.cat([s.next()[1] for _ in range(10)])
        assert len(ids.unique()) == 100 and s.epoch == epoch  # last 5 of the epoch dropped
    assert s.next()[1].numel() == 10 and s.epoch == 3


def test_state_dict_resumes_exactly(tmp_path):
    d = toy(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8))
    s = D.BatchStream(d, 16, seed=5, hflip=True)
    for _ in range(3):
        s.next()
    torch.save(s.state_dict(), tmp_path / "s.pt")
    want = [s.next() for _ in range(5)]
    r = D.BatchStream(d, 16, seed=99, hflip=True)
    r.load_state_dict(torch.load(tmp_path / "s.pt"))
    for (xa, ya), (xb, yb) in zip(want, [r.next() for _ in range(5)], strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_eval_batches():
    d = toy(torch.randint(0, 256, (30, 1, 4, 4), dtype=torch.uint8))
    d.test_x, d.test_y = d.train_x, d.train_y  # 30 test images with ids as labels
    full = D.eval_batches(d, batch_size=7)
    assert [len(y) for _, y in full] == [7, 7, 7, 7, 2]
    assert torch.equal(torch.cat([y for _, y in full]), torch.arange(30))
    assert torch.equal(pixels(torch.cat([x for x, _ in full]), d), d.test_x.float())
    sub = torch.cat([y for _, y in D.eval_batches(d, subset=12)])
    assert len(sub.unique()) == 12
    assert torch.equal(sub, torch.cat([y for _, y in D.eval_batches(d, subset=12)]))
    assert not torch.equal(sub, torch.cat([y for _, y in D.eval_batches(d, subset=12, subset_seed=1)]))


# ---- CIFAR and CUB in their official layouts -------------------------------------------------

def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def cifar_batch(labels: list[int], key: str, rng: np.random.Generator) -> dict:
    x = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)  # row = R plane, G plane, B plane
    return {"batch_label": "fake", key: labels, "data": x, "filenames": [f"{i}.png" for i in range(len(labels))]}


def test_cifar10_official_pickles(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar10" / "cifar-10-batches-py"
    batches = [cifar_batch([i % 10 for i in range(20)], "labels", rng) for _ in range(5)]
    for i, b in enumerate(batches, 1):
        write_pickle(root / f"data_batch_{i}", b)
    write_pickle(root / "test_batch", cifar_batch(list(range(10)) * 3, "labels", rng))
    write_pickle(root / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072})
    monkeypatch.setenv("FSPBENCH_DATA", str(tmp_path))
    d = D.load_task("cifar10")
    assert d.source == str(root) and d.mean.shape == (1, 3, 1, 1)
    assert d.train_x.shape == (100, 3, 32, 32) and d.test_x.shape == (30, 3, 32, 32)
    assert d.train_y.bincount().tolist() == [10] * 10
    assert torch.equal(d.train_x[20], torch.from_numpy(batches[1]["data"][0]).view(3, 32, 32))
    s = D.load_task("cifar10", classes=[7, 2], train_per_class=4)
    assert s.train_y.bincount().tolist() == [4, 4] and s.test_y.bincount().tolist() == [3, 3]
    assert torch.equal(s.test_x[s.test_y == 0], d.test_x[d.test_y == 7])
    monkeypatch.setenv("FSPBENCH_DATA", str(root.parent))  # the layout folder directly
    assert D.find_root("cifar10") == root


def test_cifar100_official_pickles(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-100-python"
    for name, per in (("train", 2), ("test", 1)):
        b = cifar_batch(list(range(100)) * per, "fine_labels", rng)
        b["coarse_labels"] = [i // 5 for i in b["fine_labels"]]
        write_pickle(root / name, b)
    write_pickle(root / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                 "coarse_label_names": [f"c{i}" for i in range(20)]})
    monkeypatch.setenv("FSPBENCH_DATA", str(tmp_path))
    d = D.load_task("cifar100")
    assert d.num_classes == 100 and d.train_x.shape == (200, 3, 32, 32) and d.test_x.shape == (100, 3, 32, 32)
    s = D.load_task("cifar100", classes=[3, 50, 99])
    assert s.num_classes == 3 and s.train_y.tolist() == [0, 1, 2, 0, 1, 2] and s.test_y.tolist() == [0, 1, 2]


def make_cub(base: Path) -> dict[str, tuple[int, int, int]]:
    """3 classes x 4 images of different sizes, one grayscale; images 1, 2 of each class are train."""
    root = base / "CUB_200_2011"
    colors = {"001.Albatross": (200, 30, 30), "002.Auklet": (30, 200, 30), "003.Blackbird": (30, 30, 200)}
    sizes = [(40, 30), (17, 50), (64, 64), (23, 11)]
    images, labels, split = [], [], []
    for cls, (name, rgb) in enumerate(colors.items(), 1):
        (root / "images" / name).mkdir(parents=True)
        for k, size in enumerate(sizes):
            img = Image.new("RGB", size, rgb)
            if cls == 2 and k == 3:
                img = img.convert("L")  # CUB has a few grayscale images
            img.save(root / "images" / name / f"{name}_{k}.jpg", quality=95)
            i = len(images) + 1
            images.append(f"{i} {name}/{name}_{k}.jpg")
            labels.append(f"{i} {cls}")
            split.append(f"{i} {int(k < 2)}")
    for fname, lines in (("images.txt", images), ("image_class_labels.txt", labels),
                         ("train_test_split.txt", split),
                         ("classes.txt", [f"{i} {n}" for i, n in enumerate(colors, 1)])):
        (root / fname).write_text("\n".join(lines) + "\n")
    return colors


def test_cub_official_tree(tmp_path, monkeypatch):
    colors = make_cub(tmp_path / "cub200")
    monkeypatch.setenv("FSPBENCH_DATA", str(tmp_path))
    d = D.load_task("cub200", image_size=16)
    assert d.source == str(tmp_path / "cub200" / "CUB_200_2011")
    assert d.train_x.shape == (6, 3, 16, 16) and d.test_x.shape == (6, 3, 16, 16)
    assert d.train_x.dtype == torch.uint8 and d.image_size == 16
    assert d.train_y.tolist() == [0, 0, 1, 1, 2, 2] and d.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    rgb = torch.tensor(list(colors.values()), dtype=torch.float32)
    mean_colour = d.train_x.float().mean((2, 3))  # (6, 3)
    assert torch.allclose(mean_colour, rgb[d.train_y], atol=12)  # jpeg is lossy
    gray = d.test_x[3].float()  # the grayscale one: three equal channels
    assert torch.allclose(gray[0], gray[1], atol=1) and torch.allclose(gray[1], gray[2], atol=1)
    assert D.load_task("cub200").train_x.shape == (6, 3, 64, 64)  # default size
    s = D.load_task("cub200", classes=[2, 0], train_per_class=1, image_size=16)
    assert s.train_y.tolist() == [1, 0] and s.test_y.tolist() == [1, 1, 0, 0]


# ---- resolution and bad input ----------------------------------------------------------------

def test_no_data_names_all_three_sources(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "system").mkdir()
    monkeypatch.setenv("FSPBENCH_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("FSPBENCH_SYSTEM_DATA", str(tmp_path / "system"))
    for task in ("cifar10", "fashion-mnist", "cub200"):
        with pytest.raises(BadInput) as e:
            D.load_task(task)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{task}: no data found")
        assert "FSPBENCH_DATA" in msg and str(tmp_path / "system" / task) in msg
        assert "download" in msg and "FSPBENCH_OFFLINE=1" in msg
    with pytest.raises(BadInput, match="apt-get install dataset-fashion-mnist"):
        D.find_root("fashion-mnist")


def test_resolution_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    for where, n in (("mine", 10), ("system/cifar100", 20)):
        write_pickle(tmp_path / where / "cifar-100-python" / "train", cifar_batch([0] * n, "fine_labels", rng))
        write_pickle(tmp_path / where / "cifar-100-python" / "test", cifar_batch([0], "fine_labels", rng))
    monkeypatch.setenv("FSPBENCH_SYSTEM_DATA", str(tmp_path / "system"))
    assert D.load_task("cifar100").train_x.shape[0] == 20  # the system package
    monkeypatch.setenv("FSPBENCH_DATA", str(tmp_path / "mine"))
    assert D.load_task("cifar100").train_x.shape[0] == 10  # FSPBENCH_DATA wins


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"task": "mnist"}, "task"),
    ({"classes": [10]}, "classes"),
    ({"classes": [-1]}, "classes"),
    ({"classes": [3, 3]}, "classes"),
    ({"classes": []}, "classes"),
    ({"classes": [True]}, "classes"),
    ({"classes": [1.0]}, "classes"),
    ({"train_per_class": "5"}, "train_per_class"),
    ({"train_per_class": 0}, "train_per_class"),
    ({"image_size": 0}, "image_size"),
])
def test_bad_input_names_the_key(kwargs, key):
    task = kwargs.pop("task", "fashion-mnist")
    with pytest.raises(BadInput, match=rf"^{key}: .*expected"):
        D.load_task(task, **kwargs)
