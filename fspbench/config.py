"""Run configuration: one frozen dataclass holds every setting of one run.

All hyperparameters of a run sit here, each with its unit and where its
default comes from (docs/METHOD.md, "Training settings"). A config converts
to and from a plain dict (TOML, JSON, ``--set key=value``) with validation that
names the offending key; its content hash is the run id, so the same settings
always give the same id and no setting is ever encoded in a folder name.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from fspbench import methods, registry
from fspbench.claims import CONTROL
from fspbench.errors import BadInput, BadKey

ROLES = ("teacher", "student")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")

# Upper bounds of a run's sizes, far above any real use (the presets' largest: width 4, image_size 64, batch_size
# 128, 128,000 steps), so that a typo such as width=100000 is one line before anything is allocated rather than a
# failed allocation of terabytes, or a run that never ends, once the data has loaded.
MAX_WIDTH = 64  # wide ResNets go to 10 (WRN-28-10), the paper to 4; a resnet20 at 64 has 1.1e9 parameters
MAX_DEPTH = 1202  # resnet1202, the deepest CIFAR ResNet of He et al. 2016
MAX_SEED = 2**63 - 1  # seeds are 64-bit integers in TOML, torch's generators and runs.parquet
# key -> (largest value, what it counts: said in the refusal)
MAX_SIZES: dict[str, tuple[int, str]] = {
    "image_size": (1024, "pixels a side; ImageNet networks read 224"),
    "batch_size": (65_536, "images per step; the largest published batches are 64k"),
    "steps": (10_000_000, "optimizer steps; the paper's schedules have 64,000"),
    "init_steps": (10_000_000, "optimizer steps; the paper's schedules have 64,000"),
    "eval_every": (10_000_000, "optimizer steps between evaluations"),
    "train_per_class": (10_000_000, "training images per class; 0 keeps them all"),
    "eval_subset": (10_000_000, "test images per evaluation; 0 evaluates the full test set"),
    "threads": (4096, "torch threads; 0 leaves torch's default"),
    "seed": (MAX_SEED, "a 64-bit seed"),
    "subset_seed": (MAX_SEED, "a 64-bit seed"),
}
_BYTES_PER_PARAMETER = 12  # fp32 weights, their gradients and SGD's momentum: what training holds at least


@dataclass(frozen=True)
class FSPStyle:
    """The FSP settings one public implementation uses (docs/METHOD.md, "Styles").

    mean_over_pairs: the pair losses are averaged (weights 1/number of pairs) rather than summed.
    """

    pairs: str
    pool: str
    distance: str
    mean_over_pairs: bool = False


# Each style reproduces its namesake's loss on the same feature maps (tests/test_fsp_styles.py).
FSP_STYLES: dict[str, FSPStyle] = {
    "paper": FSPStyle("paper", "max", "paper"),  # Yim et al. 2017, equations 1 and 2
    "repdistiller": FSPStyle("consecutive", "avg", "mse_mean"),  # distiller_zoo/FSP.py
    "kdzoo": FSPStyle("consecutive", "avg", "mse_mean", mean_over_pairs=True),  # kd_losses/fsp.py, train_kd.py
    "torchdistill": FSPStyle("torchdistill", "max", "l2_norm_dim1"),  # losses/mid_level.py FSPLoss
}


@dataclass(frozen=True)
class FSPSettings:
    """The FSP choices where implementations disagree (docs/METHOD.md, "Styles").

    style:    "paper" | "repdistiller" | "kdzoo" | "torchdistill": the pairs, pool, distance and
              weights of that implementation (FSP_STYLES). Keys given explicitly override the style's;
              an empty string / None means "the style's value", so ``resolved()`` can tell them apart.
    pairs:    "paper" (each section's first block's first activation -> section output),
              "consecutive" (stage outputs i-1 -> i, stage 0 the stem; RepDistiller / KD-Zoo),
              "torchdistill" (within each section: input of layer1 -> its output, then input of
              layer_k's second block -> layer_k's output).
    pool:     how the larger map is reduced to the smaller spatial size: "max" (paper) or "avg".
    distance: "paper" (squared L2 summed over the matrix, mean over examples),
              "mse_mean" (mean of squares over B x m x n; RepDistiller, KD-Zoo),
              "l2_norm_dim1" (L2 norms over the first map's channels, summed, / B; torchdistill),
              "l2_norm" (Frobenius norm, not squared, summed / B; fspbench's own, in no implementation).
    weights:  lambda_i per pair; None: the style's (1 each, kdzoo 1 / number of pairs); empty: 1 each.
    adapter:  "none" (paper: channel counts must match) or "conv1x1" (learned 1x1 projections on the
              student side, a deviation from the paper for students narrower than their teacher).
    """

    style: str = "paper"
    pairs: str = ""
    pool: str = ""
    distance: str = ""
    weights: tuple[float, ...] | None = None
    adapter: str = "none"

    def resolved(self) -> FSPSettings:
        """These settings with every key left unset taken from the style: the one place styles expand.

        ``weights`` stays as given (None: the style's rule), since that rule needs the number of
        pairs; ``pair_weights`` applies it. An unknown style raises BadInput.
        """
        _one_of("fsp.style", self.style, tuple(FSP_STYLES))
        base = FSP_STYLES[self.style]
        return dataclasses.replace(
            self, pairs=self.pairs or base.pairs, pool=self.pool or base.pool, distance=self.distance or base.distance
        )

    def pair_weights(self, n_pairs: int) -> tuple[float, ...]:
        """lambda_1..lambda_n: the explicit weights, else 1 each (1 / n_pairs each for a mean-over-pairs style)."""
        if self.weights is None:
            w = 1.0 / n_pairs if FSP_STYLES[self.style].mean_over_pairs else 1.0
            return (w,) * n_pairs
        if not self.weights:
            return (1.0,) * n_pairs
        if len(self.weights) != n_pairs:
            raise BadKey("fsp.weights", f"expected {n_pairs} weights (one per pair), got {len(self.weights)}")
        return self.weights

    def to_dict(self) -> dict[str, Any]:
        """The keys given explicitly (plus style and adapter): unset keys stay unset on the way back."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if f.name in ("style", "adapter") or getattr(self, f.name) not in ("", None)}

    def identity(self) -> dict[str, Any]:
        """What the loss depends on, for the run id: a style and the same settings spelled out agree.

        Equal weights of 1 are [] (as before styles existed, so earlier run ids stay valid).
        """
        r = self.resolved()
        if r.weights is None:
            weights: Any = "1/n" if FSP_STYLES[r.style].mean_over_pairs else []
        else:
            weights = list(r.weights)
        return {"pairs": r.pairs, "pool": r.pool, "distance": r.distance, "weights": weights, "adapter": r.adapter}


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one training run. Steps are optimizer steps; learning rates are SGD's.

    Stage lengths: ``steps`` is the main-task budget (stage 2 for two-stage methods). The first
    stage of fsp / fitnet has its own keys; left at None they follow the paper's ratios
    (fsp: 21k init steps per 21k main steps; fitnet: 35k per 21k) and learning rates.
    """

    # what is trained
    task: str = "fashion-mnist"
    classes: tuple[int, ...] = ()  # keep only these class ids (empty: all)
    train_per_class: int = 0  # cap on training images per class (0: no cap)
    image_size: int = 0  # resize inputs to this side in pixels (0: the task's native size)
    arch: str = "resnet20"  # resnet{6n+2}, tv-resnet18, tv-resnet34
    width: int = 1  # channel multiplier of CIFAR ResNets (paper's CIFAR-100 ResNet-32: 4)
    weights: str = ""  # local pretrained weights file for tv-resnet* (ImageNet), empty: random init
    method: str = CONTROL  # a name of fspbench.methods (the built-ins, or a plug-in's); by default the baseline
    # the method's own settings (fspbench.methods: each method's ``settings``), e.g. {beta = 1000}
    options: tuple[tuple[str, bool | int | float | str], ...] = ()
    role: str = "student"  # teacher | student: only labels the run in results
    seed: int = 0
    teacher: str = ""  # run record (.json) or checkpoint (.pt) of a finished run

    # main-task stage (paper: lr 0.1 -> 0.01 -> 0.001 at 11k / 16k of 21k steps, about 1/2 and 3/4)
    steps: int = 1000
    lr: float = 0.1
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the stage's steps where lr x= gamma
    gamma: float = 0.1
    batch_size: int = 128  # not stated in the paper; the usual CIFAR choice
    momentum: float = 0.9
    weight_decay: float = 1e-4

    # first stage of two-stage methods (None: the method's paper default)
    init_steps: int | None = None
    init_lr: float | None = None
    init_milestones: tuple[float, ...] | None = None

    # loss settings
    fsp: FSPSettings = field(default_factory=FSPSettings)
    kd_temperature: float = 3.0  # Hinton KD temperature (paper's FitNet stage 2: 3)
    kd_weight_start: float | None = None  # KD weight at the start / end of its stage, linear in
    kd_weight_end: float | None = None  # between (fitnet: 4 -> 1 as the paper ran it; kd: 1 -> 1)

    # data pipeline
    augment: bool = True  # pad 4 + random crop (paper, CIFAR-10)
    hflip: bool = False  # random horizontal flip (not stated in the paper)
    subset_seed: int = 0  # seed of the class-subset / per-class-cap draw (shared by all runs)

    # evaluation: every eval_every steps on eval_subset test images (0: full test set);
    # the final evaluation always uses the full test set
    eval_every: int = 100
    eval_subset: int = 0

    # execution
    device: str = "auto"
    threads: int = 0  # torch intra-op threads (0: leave torch's default)
    precision: str = "fp32"  # fp32 (the paper) | bf16 autocast (opt-in; the report shows its accuracy effect)
    # bf16 on hardware without native bf16 (fspbench.hardware) is refused unless forced: it is emulated
    # there, about 12x slower than fp32; forcing changes nothing in the result, so it is not in the run id
    force_bf16: bool = False
    # NHWC activations and weights: on the 2-core CPU of docs/PERFORMANCE.md training runs 1.2-1.4x and
    # inference 1.03-1.23x faster than NCHW for every CIFAR ResNet measured, and NHWC is what GPU
    # tensor cores want; results differ from NCHW only by float rounding, so it is part of the run id
    channels_last: bool = True
    compile: bool = False  # torch.compile the student: pays off on GPUs for long runs, not on small CPUs

    def validate(self) -> RunConfig:
        """Check values that types alone cannot; raise BadInput naming the key."""
        _one_of("task", self.task, tuple(registry.TASKS))
        registry.check_arch(self.arch)
        _one_of("method", self.method, methods.names())
        _one_of("role", self.role, ROLES)
        _one_of("device", self.device, DEVICES)
        _one_of("precision", self.precision, PRECISIONS)
        self._validate_fsp()
        for f in fields(self):  # nan or inf would only show up as a diverged run, after training
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise BadKey(f.name, f"expected a finite number, got {value}")
        for w in self.fsp.weights or ():
            if not math.isfinite(w):
                raise BadKey("fsp.weights", f"expected finite numbers, got {list(self.fsp.weights or ())}")
        for key in ("steps", "batch_size", "eval_every", "width"):
            _positive(key, getattr(self, key))
        for key in ("train_per_class", "image_size", "eval_subset", "threads", "seed", "subset_seed"):
            if getattr(self, key) < 0:
                raise BadKey(key, f"expected an integer >= 0, got {getattr(self, key)}")
        if self.init_steps is not None:
            _positive("init_steps", self.init_steps)
        self._validate_sizes()
        for key in ("lr", "kd_temperature"):
            _positive(key, getattr(self, key))
        if self.init_lr is not None:
            _positive("init_lr", self.init_lr)
        for key in ("momentum", "weight_decay", "gamma"):
            if getattr(self, key) < 0:
                raise BadKey(key, f"expected a number >= 0, got {getattr(self, key)}")
        for key in ("milestones", "init_milestones"):
            value = getattr(self, key)
            if value is not None and (
                any(not 0 < m < 1 for m in value) or list(value) != sorted(value)
            ):
                raise BadKey(
                    key, f"expected increasing fractions of the stage in (0, 1), got {list(value)}"
                )
        if len(set(self.classes)) != len(self.classes):
            raise BadKey("classes", f"expected distinct class ids, got {list(self.classes)}")
        n = registry.TASKS[self.task].num_classes
        if any(not 0 <= c < n for c in self.classes):
            raise BadKey("classes", f"expected class ids in 0..{n - 1} for {self.task}, got {list(self.classes)}")
        method = methods.get(self.method)
        if method.needs_teacher and not self.teacher:
            raise BadKey(
                "teacher", f"method {self.method!r} needs a teacher: "
                "--set teacher=<run record .json or checkpoint .pt of a finished run>"
            )
        if not method.needs_teacher and self.teacher:
            raise BadKey(
                "teacher", f"method {self.method!r} uses no teacher; drop teacher or pick one of "
                f"{', '.join(n for n in methods.names() if methods.get(n).needs_teacher)}"
            )
        method.check_options(dict(self.options))
        method.validate(self)
        return self

    def _validate_sizes(self) -> None:
        """The upper bounds of MAX_SIZES, MAX_WIDTH and MAX_DEPTH (the lower ones are checked by validate)."""
        for key, (largest, what) in MAX_SIZES.items():
            value = getattr(self, key)
            if value is not None and value > largest:
                raise BadKey(key, f"expected at most {largest:,} ({what}), got {value:,}")
        depth = cifar_depth(self.arch)
        if depth is not None and depth > MAX_DEPTH:
            raise BadKey("arch", f"resnet{depth} is deeper than resnet{MAX_DEPTH}, the deepest CIFAR ResNet "
                                 f"(He et al. 2016); pick a depth of at most {MAX_DEPTH}")
        if self.width > MAX_WIDTH:
            raise BadKey("width", self._width_refusal())

    def _width_refusal(self) -> str:
        """Why a width above MAX_WIDTH is refused: the memory a CIFAR ResNet of that width would need to train."""
        depth = cifar_depth(self.arch)
        if depth is None:  # torchvision's ResNets have one width
            return f"expected 1 ({self.arch} has a fixed width), got {self.width:,}"

        def cost(width: int) -> str:
            n = cifar_resnet_params(depth, width, registry.TASKS[self.task].in_channels, num_classes(self))
            return f"{n:.2g} parameters, {_bytes(n * _BYTES_PER_PARAMETER)} to train"
        return (f"expected at most {MAX_WIDTH} (a {self.arch} of width {MAX_WIDTH} has {cost(MAX_WIDTH)}), got "
                f"{self.width:,}: a {self.arch} of width {self.width:,} would have {cost(self.width)} in fp32 "
                "(weights, gradients and momentum)")

    def _validate_fsp(self) -> None:
        _one_of("fsp.style", self.fsp.style, tuple(FSP_STYLES))
        r = self.fsp.resolved()
        _one_of("fsp.pairs", r.pairs, registry.PAIR_LAYOUTS)
        _one_of("fsp.pool", r.pool, registry.POOLS)
        _one_of("fsp.distance", r.distance, registry.DISTANCES)
        _one_of("fsp.adapter", r.adapter, registry.ADAPTERS)
        if r.weights and any(w < 0 for w in r.weights):
            raise BadKey("fsp.weights", f"expected weights >= 0, got {list(r.weights)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-ready dict (tuples become lists, the fsp table stays nested with only its given keys)."""
        # field by field, not dataclasses.asdict: its deep copy is most of a grid's expansion, and the one
        # nested dataclass (fsp) is replaced just below anyway
        d: dict[str, Any] = {f.name: _plain(getattr(self, f.name)) for f in _fields(type(self))}
        d["fsp"] = self.fsp.to_dict()
        d["options"] = dict(self.options)
        if not self.options:  # runs of methods without options keep the ids they had before options existed
            del d["options"]
        return d

    def run_id(self, teacher_run_id: str = "") -> str:
        """Content hash of the settings that change the result, with a readable prefix.

        The teacher enters as its run id, not its path, so moving results keeps ids stable.
        Execution settings that do not change CPU results (threads, force_bf16) are left out.
        """
        d = self.to_dict()
        d["teacher"] = teacher_run_id
        d["fsp"] = self.fsp.identity()  # the effective FSP settings, whether given by style or key by key
        d.pop("threads")
        d.pop("force_bf16")
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.role}-{self.arch}-{self.method}-s{self.seed}-{digest}"

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def num_classes(cfg: RunConfig) -> int:
    """Classes a run's network outputs: its class subset, or all of its task's."""
    return len(cfg.classes) or registry.TASKS[cfg.task].num_classes


def cifar_depth(arch: str) -> int | None:
    """The depth of a CIFAR ResNet's name (resnet20 -> 20); None for another network."""
    m = registry.CIFAR_ARCH.match(arch)
    return int(m.group(1)) if m else None


def cifar_resnet_params(depth: int, width: int, in_channels: int, classes: int) -> int:
    """Trainable parameters of fspbench.models.CifarResNet(depth, classes, in_channels, width), without torch:
    a resnet20 of width 1 has 0.27M, and the count grows with width squared (every conv is 16w x 32w x ...)."""
    n = (depth - 2) // 6  # blocks per section

    def block(c_in: int, c_out: int) -> int:  # two 3x3 convs and their batch norms, a 1x1 shortcut on a change
        shortcut = c_in * c_out + 2 * c_out if c_in != c_out else 0
        return 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out + shortcut

    widths = (16 * width, 32 * width, 64 * width)
    total = 9 * in_channels * widths[0] + 2 * widths[0]  # the stem conv and its batch norm
    c_in = widths[0]
    for c_out in widths:
        total += block(c_in, c_out) + (n - 1) * block(c_out, c_out)
        c_in = c_out
    return total + widths[-1] * classes + classes  # the classifier


def _bytes(n: float) -> str:
    """``n`` bytes in decimal units: 92 TB."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def teacher_mismatch(cfg: RunConfig, teacher: RunConfig, name: str = "the teacher") -> tuple[str, str] | None:
    """Why ``teacher``'s run cannot teach ``cfg``'s, before either is trained: (the student key at fault,
    what is wrong), or None when they fit. One check for a grid's groups and for ``fspbench train``."""
    t_in, s_in = registry.TASKS[teacher.task].in_channels, registry.TASKS[cfg.task].in_channels
    if t_in != s_in:
        return "teacher", (f"{name} reads {teacher.task} ({t_in} input channels) but the students read {cfg.task} "
                           f"({s_in}); pick a teacher with the same input channels")
    return methods.get(cfg.method).teacher_mismatch(cfg, teacher, name)


def _one_of(key: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise BadKey(key, f"expected one of {', '.join(accepted)}; got {value!r}")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise BadKey(key, f"expected a number > 0, got {value}")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_from_dict(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a validated RunConfig from a nested dict; unknown keys and wrong types raise BadInput.

    ``source`` prefixes messages (a file name or "--set") so the user knows where to look.
    """
    try:
        fsp_raw = raw.get("fsp", {})
        if not isinstance(fsp_raw, dict):
            raise BadKey("fsp", f"expected a table of FSP settings, got {fsp_raw!r}")
        fsp = FSPSettings(**_coerce_fields(FSPSettings, fsp_raw, prefix="fsp."))
        options = raw.get("options", {})
        if not isinstance(options, dict):
            raise BadKey("options", f"expected a table of the method's settings, e.g. {{beta = 1000}}, got {options!r}")
        top = {k: v for k, v in raw.items() if k not in ("fsp", "options")}
        cfg = RunConfig(fsp=fsp, options=tuple(sorted(options.items())),
                        **_coerce_fields(RunConfig, top, prefix="", skip=("fsp", "options")))
        return cfg.validate()
    except BadKey as err:  # the key path inside this dict, under its source
        raise BadKey(f"{source}: {err.key}", err.what) if source else err from None


_FIELDS: dict[type, tuple[dataclasses.Field[Any], ...]] = {}


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    """A dataclass's fields, read once (a grid of thousands of runs hashes a config per run)."""
    if cls not in _FIELDS:
        _FIELDS[cls] = dataclasses.fields(cls)
    return _FIELDS[cls]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A dataclass's field types, resolved once: a grid of thousands of runs builds a config per run."""
    return typing.get_type_hints(cls)


def _coerce_fields(
    cls: type, raw: dict[str, Any], prefix: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    hints = _hints(cls)
    known = [f.name for f in fields(cls) if f.name not in skip]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise BadKey(
                f"{prefix}{key}", f"unknown key{hint}; known keys: {', '.join(prefix + k for k in known)}"
            )
        out[key] = _coerce(prefix + key, value, hints[key])
    return out


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a field's type; accept ints for floats and lists for tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, options[0])
    if origin is tuple:
        (item, _) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise BadKey(key, f"expected a list of {item.__name__}, got {value!r}")
        return tuple(_coerce(key, v, item) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise BadKey(key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadKey(key, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadKey(key, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise BadKey(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported field type {hint} for {key}")  # a bug here, not bad input


_SET = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)=(.*)$", re.S)


def parse_set(items: list[str]) -> dict[str, Any]:
    """Turn ``["steps=200", "fsp.pool=avg", "classes=[5,6]"]`` into a nested dict.

    Values are read as TOML values (numbers, booleans, lists, quoted strings); anything
    that is not valid TOML is taken as a bare string, so ``arch=resnet8`` works unquoted.
    """
    out: dict[str, Any] = {}
    for item in items:
        m = _SET.match(item)
        if not m:
            raise BadInput(f"--set {item!r}: expected key=value, e.g. --set steps=200")
        key, text = m.groups()
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise BadInput(f"--set {item!r}: {p} is not a table")
        node[leaf] = value
    return out


def load_config_file(path: str) -> dict[str, Any]:
    """Read a TOML run config into a dict; a missing or malformed file raises BadInput.

    A leading UTF-8 byte order mark (what some Windows editors write) is read past, as CRLF line ends are.
    """
    try:
        with open(path, "rb") as fh:
            text = read_toml_text(fh.read())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such config file; pass a TOML file or use --set key=value") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a folder, not a config file; pass a TOML file or use --set key=value") from None
    except PermissionError:
        raise BadInput(f"{path}: cannot read the config file (permission denied); make it readable") from None
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BadInput(f"{path}: invalid TOML: {err}") from None


def read_toml_text(data: bytes) -> str:
    """A TOML file's bytes as text, without the UTF-8 byte order mark some editors put first: TOML is UTF-8,
    and tomllib would refuse the mark as an invalid character at line 1, column 1."""
    return data.decode("utf-8-sig")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge: values in ``override`` win; tables merge key by key."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out
