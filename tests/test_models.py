"""Models: parameter counts against arithmetic, depth checks; hooks against a hand-unrolled forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fspbench.errors import BadInput
from fspbench.features import FeatureCapture, Point, pair_points
from fspbench.models import CifarResNet, build_model, check_arch


def _expected_params(depth: int, classes: int, in_ch: int, width: int) -> int:
    """Count by hand: 3x3 convs without bias, BN (2 per channel), 1x1 BN shortcuts, linear."""
    n = (depth - 2) // 6
    w = [16 * width, 32 * width, 64 * width]
    total = in_ch * w[0] * 9 + 2 * w[0]  # stem conv + BN
    c_in = w[0]
    for c in w:
        for b in range(n):
            cin = c_in if b == 0 else c
            total += cin * c * 9 + 2 * c + c * c * 9 + 2 * c  # two convs + two BNs
            if cin != c:
                total += cin * c + 2 * c  # 1x1 projection shortcut + BN
        c_in = c
    return total + w[-1] * classes + classes


@pytest.mark.parametrize("depth,classes,in_ch,width", [(20, 10, 3, 1), (8, 10, 1, 1), (32, 100, 3, 4), (14, 5, 1, 2)])
def test_parameter_counts(depth: int, classes: int, in_ch: int, width: int) -> None:
    model = CifarResNet(depth, classes, in_ch, width)
    assert sum(p.numel() for p in model.parameters()) == _expected_params(depth, classes, in_ch, width)


def test_resnet20_is_about_0_27m() -> None:
    n = sum(p.numel() for p in build_model("resnet20", 10, 3).parameters())
    assert 0.26e6 < n < 0.28e6


@pytest.mark.parametrize("arch", ["resnet7", "resnet21", "resnet2", "vgg16", "resnet"])
def test_bad_arch_is_clear_error(arch: str) -> None:
    with pytest.raises(BadInput, match="arch"):
        check_arch(arch)


def test_output_shapes_and_grayscale() -> None:
    model = build_model("resnet8", 10, 1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    tv = build_model("tv-resnet18", 7, 1)
    assert tv(torch.randn(2, 1, 64, 64)).shape == (2, 7)


def test_torchvision_teacher_loads_local_weights(tmp_path) -> None:
    import torchvision

    ref = torchvision.models.resnet34(weights=None)
    path = tmp_path / "resnet34-imagenet.pth"
    torch.save(ref.state_dict(), path)
    model = build_model("tv-resnet34", 200, 3, weights=str(path))
    assert torch.equal(model.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert model.fc.out_features == 200
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(BadInput, match="weights"):
        build_model("tv-resnet34", 200, 3, weights=str(tmp_path / "bad.pth"))
    with pytest.raises(BadInput, match="weights"):
        build_model("tv-resnet34", 200, 3, weights=str(tmp_path / "missing.pth"))


def _unrolled(model: CifarResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The forward pass written out by hand, keeping every map the pair layouts use."""
    out: dict[str, torch.Tensor] = {}
    h = torch.relu(model.bn1(model.conv1(x)))
    out["stem"] = h
    for name in ("layer1", "layer2", "layer3"):
        for b, block in enumerate(getattr(model, name)):
            a1 = torch.relu(block.bn1(block.conv1(h)))
            if b == 0:
                out[f"{name}.first"] = a1
            h = torch.relu(block.bn2(block.conv2(a1)) + block.shortcut(h))
            out[f"{name}.{b}"] = h  # block b's output: the input of block b + 1
        out[name] = h
    return out


def test_hooks_capture_same_tensors_as_unrolled_forward() -> None:
    torch.manual_seed(0)
    model = CifarResNet(14, 10, 1).eval()
    x = torch.randn(3, 1, 28, 28)
    ref = _unrolled(model, x)
    layouts = {
        "paper": [("layer1.first", "layer1"), ("layer2.first", "layer2"), ("layer3.first", "layer3")],
        "consecutive": [("stem", "layer1"), ("layer1", "layer2"), ("layer2", "layer3")],
        "torchdistill": [("stem", "layer1"), ("layer2.0", "layer2"), ("layer3.0", "layer3")],
    }
    for layout, names in layouts.items():
        pairs = pair_points(model, layout)
        with FeatureCapture(model, [p for pr in pairs for p in pr]) as cap:
            model(x)
            got = cap.pairs(pairs)
        assert len(got) == len(names)
        for (ga, gb), (na, nb) in zip(got, names):
            assert torch.allclose(ga, ref[na], atol=1e-6), (layout, na)
            assert torch.allclose(gb, ref[nb], atol=1e-6), (layout, nb)


def test_hooks_removed_after_capture_and_model_unchanged() -> None:
    model = build_model("tv-resnet18", 10, 3)
    before = {n: m for n, m in model.named_modules()}
    pairs = pair_points(model, "paper")
    assert pairs[0][0] == Point("layer1.0.bn1", relu=True)
    with FeatureCapture(model, [p for pr in pairs for p in pr]) as cap:
        model(torch.randn(1, 3, 64, 64))
        assert len(cap.maps) == 8
        assert (cap.maps[pairs[0][0]] >= 0).all()  # rectified like the block's own ReLU
    hooked = [m for m in model.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert hooked == []
    assert {n: m for n, m in model.named_modules()} == before
    assert isinstance(model.layer1, nn.Sequential)
