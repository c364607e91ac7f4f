"""Tasks, their on-disk layouts, and device-resident batches.

Tasks (``TASKS``) and the official layouts read here:

- ``fashion-mnist``: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in one folder
  (the Debian package ``dataset-fashion-mnist`` ships the ``.gz`` files; torchvision's
  download leaves them under ``FashionMNIST/raw``).
- ``cifar10``: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (python pickles).
- ``cifar100``: ``cifar-100-python/{train,test,meta}`` (python pickles, ``fine_labels``).
- ``cub200``: ``CUB_200_2011/{images.txt,image_class_labels.txt,train_test_split.txt,
  classes.txt,images/<class dir>/<file>.jpg}``; class ids are 1-based on disk, 0-based here;
  images are squashed to ``image_size`` x ``image_size`` (default 64).

Where a task's files are found (``find_root``), first hit wins:

1. ``$FSPBENCH_DATA``: the files directly, in their official subfolder, or both of those
   under ``$FSPBENCH_DATA/<task>/`` (e.g. ``$FSPBENCH_DATA/cifar10/cifar-10-batches-py``).
2. The system dataset package: ``/usr/share/datasets/<task>`` (replace ``/usr/share/datasets``
   with ``$FSPBENCH_SYSTEM_DATA``, for tests).
3. torchvision's download into ``~/.cache/fspbench/data/<task>``; skipped when
   ``FSPBENCH_OFFLINE=1`` (an earlier download there is still used).

Whole tasks are decoded once per process (``clear_cache`` forgets them). Images stay uint8
on the device; ``BatchStream`` crops, flips and normalises whole batches with tensor ops.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import struct
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fspbench.errors import BadInput
from fspbench.registry import TASKS, TaskInfo

Raw = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # train_x, train_y, test_x, test_y


@dataclass
class TaskData:
    """A loaded (possibly class-subsetted) task. mean/std are (1, C, 1, 1) in 0..255 units."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: torch.Tensor  # (1, C, 1, 1) float32, 255 * TaskInfo.mean
    std: torch.Tensor  # (1, C, 1, 1) float32, 255 * TaskInfo.std
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64 in 0..num_classes-1
    test_x: torch.Tensor  # (M, C, H, W) uint8
    test_y: torch.Tensor  # (M,) int64
    source: str


# ---- readers: folder holding the files -> full task as CPU tensors --------------------------

def _read_idx(folder: Path, stem: str) -> torch.Tensor:
    """An idx (MNIST-format) uint8 array, plain or gzipped; torchvision's reader can't take .gz."""
    path = folder / stem if (folder / stem).exists() else folder / f"{stem}.gz"
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if raw[:3] != b"\x00\x00\x08":  # magic: two zero bytes, 0x08 = unsigned byte
        raise BadInput(f"fashion-mnist: {path} is not an idx uint8 file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)


def _read_fashion_mnist(d: Path, size: int) -> Raw:
    x, y, tx, ty = (_read_idx(d, f"{s}-ubyte") for s in _FM_STEMS)
    return x[:, None].clone(), y.long(), tx[:, None].clone(), ty.long()


def _read_cifar(d: Path, size: int, *, train: list[str], test: list[str], key: str) -> Raw:
    """Reads the pickles as torchvision does, minus its md5 check (which rejects test fixtures)."""
    out: list[torch.Tensor] = []
    for names in (train, test):
        xs, ys = [], []
        for name in names:
            with open(d / name, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.extend(entry[key])
        out += [torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.long)]
    return out[0], out[1], out[2], out[3]


def _read_cub(d: Path, size: int) -> Raw:
    from PIL import Image  # torchvision.io's decoders are deprecated since 0.29
    from torchvision.transforms.v2.functional import resize

    def table(name: str) -> dict[int, str]:
        rows = (line.split(maxsplit=1) for line in (d / name).read_text().splitlines() if line.strip())
        return {int(k): v.strip() for k, v in rows}

    paths, labels, is_train = table("images.txt"), table("image_class_labels.txt"), table("train_test_split.txt")
    ids = sorted(paths)

    def load(i: int) -> torch.Tensor:
        with Image.open(d / "images" / paths[i]) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale still >= size, much faster
            # RGB: a few CUB images are grayscale or CMYK. Squash to a square, keeping the whole bird.
            hwc = torch.from_numpy(np.asarray(img.convert("RGB")).copy())
        return resize(hwc.permute(2, 0, 1), [size, size], antialias=True)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # decoding releases the GIL
        x = torch.stack(list(pool.map(load, ids)))
    y = torch.tensor([int(labels[i]) - 1 for i in ids], dtype=torch.long)  # 1-based on disk
    train = torch.tensor([is_train[i] == "1" for i in ids])
    return x[train], y[train], x[~train], y[~train]


_FM_STEMS = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
_CUB_URL = "https://data.caltech.edu/records/65de6-vhp56/files/CUB_200_2011.tgz"


@dataclass(frozen=True)
class _Layout:
    subdirs: tuple[str, ...]  # where the files may sit inside a candidate folder
    files: tuple[str, ...]  # must all exist there (fashion-mnist: plain or .gz)
    read: Callable[[Path, int], Raw]  # folder, image_size -> full task on CPU
    tv_class: str  # torchvision.datasets class that downloads it ("" = plain archive)


_C10 = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
_LAYOUTS: dict[str, _Layout] = {
    "fashion-mnist": _Layout(("", "FashionMNIST/raw"), tuple(f"{s}-ubyte" for s in _FM_STEMS),
                             _read_fashion_mnist, "FashionMNIST"),
    "cifar10": _Layout(("cifar-10-batches-py", ""), (*_C10[0], *_C10[1]),
                       functools.partial(_read_cifar, train=_C10[0], test=_C10[1], key="labels"), "CIFAR10"),
    "cifar100": _Layout(("cifar-100-python", ""), ("train", "test"),
                        functools.partial(_read_cifar, train=["train"], test=["test"], key="fine_labels"),
                        "CIFAR100"),
    "cub200": _Layout(("CUB_200_2011", ""), ("images.txt", "image_class_labels.txt", "train_test_split.txt",
                                             "images"), _read_cub, ""),
}


def _download(task: str, dest: Path) -> None:
    """torchvision's download of `task` into `dest` (needs the network)."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    if name := _LAYOUTS[task].tv_class:
        getattr(tvd, name)(str(dest), download=True)
    else:  # CUB: the official archive holds CUB_200_2011/
        download_and_extract_archive(_CUB_URL, download_root=str(dest))


# ---- resolution ------------------------------------------------------------------------------

def _holding(task: str, base: Path) -> Path | None:
    """The folder under `base` (itself, its official subfolder, or base/<task>/...) with the files."""
    lay = _LAYOUTS[task]
    for top in (base, base / task):
        for sub in lay.subdirs:
            d = top / sub if sub else top
            if all((d / f).exists() or (d / f"{f}.gz").exists() for f in lay.files):
                return d
    return None


def _offline() -> bool:
    return os.environ.get("FSPBENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def find_root(task: str) -> Path:
    """The folder that directly holds `task`'s files (e.g. ``.../cifar-10-batches-py``).

    Tries $FSPBENCH_DATA, then the system dataset package, then torchvision's download into
    ~/.cache/fspbench/data/<task>; raises BadInput with one line naming all three otherwise.
    """
    _check_task(task)
    env = os.environ.get("FSPBENCH_DATA")
    if env and (d := _holding(task, Path(env).expanduser())):
        return d
    system = Path(os.environ.get("FSPBENCH_SYSTEM_DATA") or "/usr/share/datasets") / task
    if d := _holding(task, system):
        return d
    cache = Path.home() / ".cache" / "fspbench" / "data" / task
    if d := _holding(task, cache):
        return d
    if _offline():
        why = "skipped: FSPBENCH_OFFLINE=1"
    else:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            _download(task, cache)
            if d := _holding(task, cache):
                return d
            why = f"failed: no {task} files in {cache} after it"
        except (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError) as e:  # net/disk/archive
            why = "failed: " + (f"{type(e).__name__}: {e}".splitlines() or ["?"])[0][:160]
    lay = _LAYOUTS[task]
    what = lay.subdirs[0] or "the idx files (train-images-idx3-ubyte.gz, ...)"
    now = f" (now {env!r}, none there)" if env else ""
    pkg = ("apt-get install dataset-fashion-mnist, " if task == "fashion-mnist" else "")
    raise BadInput(f"{task}: no data found: set FSPBENCH_DATA{now} to a folder holding {what}, "
                   f"or install the system dataset package ({pkg}{system}), "
                   f"or allow torchvision's download into {cache} ({why})")


def record_source(root: str | os.PathLike[str]) -> str:
    """Where a task's files were found (``find_root``'s folder), as a run record names it: relative to the
    place it was searched, so that records carry no machine's absolute path.

    ``$FSPBENCH_DATA/<rest>`` (``$FSPBENCH_DATA`` alone for the folder itself), ``system:<rest>`` under the
    system dataset folder (``/usr/share/datasets`` or ``$FSPBENCH_SYSTEM_DATA``), ``download:<rest>`` under
    torchvision's download folder (``~/.cache/fspbench/data``); any other folder by its name alone. Records
    written before this keep the absolute path they hold.
    """
    env = os.environ.get("FSPBENCH_DATA")
    bases = [("$FSPBENCH_DATA/", Path(env).expanduser())] if env else []  # the order find_root searches
    bases += [("system:", Path(os.environ.get("FSPBENCH_SYSTEM_DATA") or "/usr/share/datasets")),
              ("download:", Path.home() / ".cache" / "fspbench" / "data")]
    folder = Path(root)
    for label, base in bases:
        try:
            rest = folder.relative_to(base).as_posix()
        except ValueError:
            continue
        return label.rstrip("/") if rest == "." else label + rest
    return folder.name


# ---- loading ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _load_raw(task: str, root: str, image_size: int) -> Raw:
    """Full task on CPU, decoded once per (task, folder, size) in this process."""
    x, y, tx, ty = _LAYOUTS[task].read(Path(root), image_size)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:  # any task may be resized
        from torchvision.transforms.v2.functional import resize

        x, tx = (resize(t, [image_size, image_size], antialias=True) for t in (x, tx))
    n = TASKS[task].num_classes
    for labels in (y, ty):
        if labels.numel() and (labels.min() < 0 or labels.max() >= n):
            raise BadInput(f"{task}: labels in {root} fall outside 0..{n - 1}; the files are not {task}")
    return x.contiguous(), y, tx.contiguous(), ty


def clear_cache() -> None:
    """Forget every decoded task (tests that change the data folders call this)."""
    _load_raw.cache_clear()


def _check_task(task: str) -> TaskInfo:
    if task not in TASKS:
        raise BadInput(f"task: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return TASKS[task]


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _pos_int(key: str, v: object) -> int:
    if not _is_int(v) or v < 1:  # type: ignore[operator]
        raise BadInput(f"{key}: expected an integer >= 1, got {v!r}")
    return int(v)  # type: ignore[call-overload]


def load_task(task: str, *, classes: Sequence[int] | None = None, train_per_class: int | None = None,
              image_size: int | None = None, device: str | torch.device = "cpu", subset_seed: int = 0) -> TaskData:
    """Load `task`, keep `classes` (original ids, relabelled 0..k-1 in that order) and at most
    `train_per_class` training images per class; the test set keeps all images of those classes.

    The training subset comes from one permutation drawn with ``subset_seed`` alone, so every run
    of a benchmark sees the same images, and a class keeps the same images whatever other classes
    are kept. Returns uint8 images (N, C, H, W) and int64 labels (N,) on `device`.
    """
    info = _check_task(task)
    size = info.image_size if image_size is None else _pos_int("image_size", image_size)
    if classes is None:
        keep = list(range(info.num_classes))
    else:
        keep = [int(c) if _is_int(c) else -1 for c in classes]
        if not keep or not all(0 <= k < info.num_classes for k in keep):
            raise BadInput(f"classes: expected a non-empty list of class ids in 0..{info.num_classes - 1} "
                           f"for {task}, got {list(classes)!r}")
        if len(set(keep)) != len(keep):
            raise BadInput(f"classes: duplicate class ids in {list(classes)!r}; expected distinct ids")
    cap = None if train_per_class is None else _pos_int("train_per_class", train_per_class)

    root = find_root(task)
    x, y, tx, ty = _load_raw(task, str(root), size)
    lut = torch.full((info.num_classes,), -1, dtype=torch.long)  # original id -> new id or -1
    lut[torch.tensor(keep)] = torch.arange(len(keep))

    if cap is None:
        idx = torch.nonzero(lut[y] >= 0).flatten()
    else:
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(subset_seed))
        idx = torch.cat([perm[y[perm] == c][:cap] for c in keep]).sort().values
    tidx = torch.nonzero(lut[ty] >= 0).flatten()

    dev = torch.device(device)

    def stat(v: tuple[float, ...]) -> torch.Tensor:  # (1, C, 1, 1) in 0..255 units
        return (torch.tensor(v, dtype=torch.float32) * 255).view(1, -1, 1, 1).to(dev)

    return TaskData(name=task, num_classes=len(keep), in_channels=info.in_channels, image_size=size,
                    mean=stat(info.mean), std=stat(info.std),
                    train_x=x[idx].to(dev), train_y=lut[y[idx]].to(dev),
                    test_x=tx[tidx].to(dev), test_y=lut[ty[tidx]].to(dev), source=str(root))


def synthetic_task(task: str, n: int, *, classes: int = 0, image_size: int = 0, test: int = 256,
                   device: str | torch.device = "cpu") -> TaskData:
    """``n`` random uint8 images (n, C, H, W) and labels of ``task``'s shape (``classes`` classes at
    ``image_size``; 0: the task's own), the first ``test`` of them also its test set: what timing a
    training step needs (the estimate's calibration, ``fspbench perf``) without the task's files."""
    info = _check_task(task)
    k, side = classes or info.num_classes, image_size or info.image_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, info.in_channels, side, side), generator=g, dtype=torch.uint8)
    y = torch.randint(0, k, (n,), generator=g)
    dev = torch.device(device)
    mean, std = ((torch.tensor(v, dtype=torch.float32) * 255).view(1, -1, 1, 1).to(dev) for v in (info.mean, info.std))
    return TaskData(task, k, info.in_channels, side, mean, std, x.to(dev), y.to(dev), x[:test].to(dev),
                    y[:test].to(dev), "synthetic")


def normalize(x: torch.Tensor, data: TaskData) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (B, C, H, W): (x/255 - mean) / std."""
    return (x.float() - data.mean) / data.std


# ---- batches ---------------------------------------------------------------------------------

# Test images per evaluation batch. On a CPU at 1 thread, NHWC, a ResNet-8 forward runs ~4,200 img/s at
# 128 against ~3,800 at 256 and ~2,000 at 1,000, whose activations no longer fit in the caches (ResNet-14:
# ~1,940 at 128 and 256, ~1,780 at 512); small batches cost a GPU nothing at evaluation's volume.
EVAL_BATCH = 128

class BatchStream:
    """Endless stream of training batches from tensors on the device; no per-sample Python.

    Every random draw of an epoch (its permutation, crop offsets and flips) is made at the
    epoch's start from one CPU generator seeded with `seed`, and moved to the device in one
    copy, so a CPU and a GPU run see the same batches and no step waits on a host-device copy.
    Incomplete last batches of an epoch are dropped.
    """

    PAD = 4  # pixels of zero padding before the random crop (paper: 32 -> 40 -> 32)

    def __init__(self, data: TaskData, batch_size: int, seed: int, *, augment: bool = True,
                 hflip: bool = False, memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.data, self.augment, self.hflip, self.memory_format = data, augment, hflip, memory_format
        self.batch_size = _pos_int("batch_size", batch_size)
        self.n = len(data.train_y)
        if self.batch_size > self.n:
            raise BadInput(f"batch_size: expected at most the {self.n} training images, got {batch_size}")
        dev = data.train_x.device
        _, c, h, w = data.train_x.shape
        self._rows, self._cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
        self._bi = torch.arange(self.batch_size, device=dev)[:, None, None, None]
        self._ci = torch.arange(c, device=dev)[None, :, None, None]
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch, self.pos = 0, 0
        self._draw_epoch()

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def _draw_epoch(self) -> None:
        """The epoch's permutation (n,), crop offsets (2, n) and flips (n,), on the CPU and the device."""
        g, n, p = self.gen, self.n, self.PAD if self.augment else 0
        self.perm = torch.randperm(n, generator=g)
        self.offsets = torch.randint(0, 2 * p + 1, (2, n), generator=g) if p else torch.zeros(2, n, dtype=torch.long)
        self.flips = torch.rand(n, generator=g) < 0.5 if self.hflip else torch.zeros(n, dtype=torch.bool)
        self._to_device()

    def _to_device(self) -> None:
        dev = self.data.train_x.device
        self._perm, self._off, self._flip = (t.to(dev) for t in (self.perm, self.offsets, self.flips))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, H, W) float32 normalised, y: (B,) int64, on the data's device."""
        b = self.batch_size
        if self.pos + b > self.n:
            self.pos, self.epoch = 0, self.epoch + 1
            self._draw_epoch()
        sl = slice(self.pos, self.pos + b)
        self.pos += b
        idx = self._perm[sl]
        x = self.data.train_x[idx]  # (B, C, H, W) uint8
        if self.augment or self.hflip:
            p = self.PAD if self.augment else 0
            rows = self._off[0, sl, None] + self._rows  # (B, H) rows of the padded image
            cols = self._off[1, sl, None] + self._cols  # (B, W)
            if self.hflip:
                cols = torch.where(self._flip[sl, None], cols.flip(1), cols)  # mirror the crop window
            if p:
                x = F.pad(x, (p, p, p, p))  # zeros in uint8 pixel space, like RandomCrop(padding=4)
            x = x[self._bi, self._ci, rows[:, None, :, None], cols[:, None, None, :]]  # one gather: crop + flip
        return normalize(x, self.data).contiguous(memory_format=self.memory_format), self.data.train_y[idx]

    def state_dict(self) -> dict:
        """Everything needed to continue with exactly the same batches."""
        return {"generator": self.gen.get_state(), "perm": self.perm.clone(), "offsets": self.offsets.clone(),
                "flips": self.flips.clone(), "pos": self.pos, "epoch": self.epoch, "batch_size": self.batch_size,
                "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        if (state["batch_size"], state["n"]) != (self.batch_size, self.n):
            raise ValueError("BatchStream state is for another batch size or training set")
        self.gen.set_state(state["generator"])
        self.perm, self.offsets, self.flips = (state[k].clone() for k in ("perm", "offsets", "flips"))
        self.pos, self.epoch = int(state["pos"]), int(state["epoch"])
        self._to_device()


def eval_batches(
    data: TaskData, *, subset: int | None = None, batch_size: int = EVAL_BATCH, subset_seed: int = 0,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised, unaugmented test batches [(x (b, C, H, W) float32, y (b,) int64), ...].

    subset=None: the whole test set in order; subset=k: a fixed k images (all if k exceeds the
    test set) drawn with `subset_seed` alone, so every run is evaluated on the same images.
    """
    m = len(data.test_y)
    idx = torch.arange(m)
    if subset is not None:
        k = min(_pos_int("eval_subset", subset), m)
        idx = torch.randperm(m, generator=torch.Generator().manual_seed(subset_seed))[:k].sort().values
    idx = idx.to(data.test_x.device)
    return [(normalize(data.test_x[i], data).contiguous(memory_format=memory_format), data.test_y[i])
            for i in idx.split(_pos_int("batch_size", batch_size))]
