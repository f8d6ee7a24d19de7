"""Tests for ticketlab.models: shapes, parameter counts, extra skips, activations, width, stages."""
import pytest
import torch
from torch import nn

from ticketlab.models import MODELS, build_model, stages
from ticketlab.models.layers import ACTIVATIONS, ConvBN, make_activation, scale_width
from ticketlab.models.vgg import VGG16_CFG

ARCHS = ["resnet18", "resnet34", "resnet50", "resnet20", "resnet32", "resnet56", "resnet110",
         "vgg16", "mobilenet", "lenet5"]
SKIP_ARCHS = [a for a in ARCHS if a != "lenet5"]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def extra_modules(model):
    return [m for m in model.modules() if getattr(m, "ticketlab_extra", False)]


def test_registry_lists_exactly_the_archs():
    assert sorted(MODELS) == sorted(ARCHS)
    with pytest.raises(KeyError, match="unknown model"):
        build_model("resnet19", 10)
    with pytest.raises(KeyError, match="unknown activation"):
        build_model("resnet20", 10, activation="tanhh")


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape_cifar(arch):
    torch.manual_seed(0)
    model = build_model(arch, 100, in_channels=3, input_size=32, width=0.25)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape_small_grayscale(arch):
    torch.manual_seed(0)
    model = build_model(arch, 10, in_channels=1, input_size=8, width=0.25)
    out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_lenet_mnist_shape():
    model = build_model("lenet5", 10, in_channels=1, input_size=28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.fc1.in_features == 16 * 5 * 5


def _resnet_a_count(depth, classes=10):
    """Hand count: 3x3 convs without bias, BN (2 per channel), zero-padding shortcuts, linear head."""
    n = (depth - 2) // 6
    count = 3 * 16 * 9 + 2 * 16  # stem
    cin = 16
    for w in (16, 32, 64):
        for _ in range(n):
            count += cin * w * 9 + 2 * w + w * w * 9 + 2 * w
            cin = w
    return count + 64 * classes + classes


def _vgg16_count(classes=10):
    count, cin = 0, 3
    for item in VGG16_CFG:
        if item != "M":
            count += cin * item * 9 + 2 * item  # conv (no bias) + BN weight and bias
            cin = item
    return count + 512 * classes + classes


def test_parameter_counts_standard_models():
    assert n_params(build_model("resnet18", 10)) == 11_173_962
    assert _resnet_a_count(20) == 269_722  # option A: no projection parameters
    assert n_params(build_model("resnet20", 10)) == _resnet_a_count(20)
    assert n_params(build_model("resnet56", 10)) == _resnet_a_count(56) == 853_018
    assert n_params(build_model("vgg16", 10)) == _vgg16_count(10)
    assert n_params(build_model("lenet5", 10, in_channels=1, input_size=28)) == 61_706


def test_option_a_shortcut_is_parameter_free_and_pads_channels():
    model = build_model("resnet20", 10)
    block = model.layer2[0]
    assert list(block.shortcut.parameters()) == []
    x = torch.randn(1, 16, 8, 8)
    y = block.shortcut(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_convbn_extra_skip_only_across_3x3():
    plain = ConvBN(4, 8, 1, stride=2, extra_skip=True)
    assert not hasattr(plain, "skip_conv")
    conv = ConvBN(4, 8, 3, stride=2, extra_skip=True)
    assert conv.skip_conv.kernel_size == (1, 1) and conv.skip_conv.stride == (2, 2)
    assert conv.skip_conv.in_channels == 4 and conv.skip_conv.out_channels == 8 and conv.skip_conv.groups == 1
    assert torch.all(conv.skip_conv.weight == 1e-4)
    assert conv.skip_conv.ticketlab_extra and conv.skip_bn.ticketlab_extra
    assert conv.conv.bias is None
    assert conv(torch.randn(2, 4, 9, 9)).shape == (2, 8, 5, 5)


def test_extra_skip_across_depthwise_not_pointwise():
    model = build_model("mobilenet", 10, width=0.25, extra_skip=True)
    block = model.layers[0][0]
    assert block.conv1.conv.groups == block.conv1.conv.in_channels
    assert block.conv1.skip_conv.groups == 1
    assert not hasattr(block.conv2, "skip_conv")
    resnet = build_model("resnet50", 10, width=0.125, extra_skip=True)
    bottleneck = resnet.layer2[0]
    assert hasattr(bottleneck.conv2, "skip_conv")
    assert not hasattr(bottleneck.conv1, "skip_conv") and not hasattr(bottleneck.conv3, "skip_conv")
    assert not hasattr(bottleneck.shortcut, "skip_conv")


@pytest.mark.parametrize("arch", SKIP_ARCHS)
def test_extra_skip_adds_only_marked_parameters_and_changes_function(arch):
    torch.manual_seed(0)
    base = build_model(arch, 10, input_size=16, width=0.25)
    skip = build_model(arch, 10, input_size=16, width=0.25, extra_skip=True)
    assert extra_modules(base) == []
    extras = extra_modules(skip)
    assert extras
    extra_ids = {id(p) for m in extras for p in m.parameters(recurse=False)}
    unmarked = sum(p.numel() for p in skip.parameters() if id(p) not in extra_ids)
    assert unmarked == n_params(base)
    assert n_params(skip) > n_params(base)

    base_keys, skip_keys = set(base.state_dict()), set(skip.state_dict())
    assert base_keys < skip_keys
    assert all(".skip_conv." in k or ".skip_bn." in k for k in skip_keys - base_keys)
    result = skip.load_state_dict(base.state_dict(), strict=False)
    assert result.unexpected_keys == [] and result.missing_keys

    x = torch.randn(4, 3, 16, 16)
    base.train(), skip.train()  # batch statistics: the tiny skip conv is normalised to unit scale
    with torch.no_grad():
        out_base, out_skip = base(x), skip(x)
    assert out_skip.shape == out_base.shape == (4, 10)
    assert (out_base - out_skip).abs().max() > 1e-3


def test_extra_skip_undefined_for_lenet():
    with pytest.raises(ValueError, match="extra_skip is not defined for lenet5"):
        build_model("lenet5", 10, in_channels=1, input_size=28, extra_skip=True)


def test_activations_registry():
    assert isinstance(make_activation("relu"), nn.ReLU)
    assert isinstance(make_activation("swish"), nn.SiLU)
    assert isinstance(make_activation("mish"), nn.Mish)
    assert make_activation("relu") is not make_activation("relu")
    assert set(ACTIVATIONS) == {"relu", "swish", "mish", "pswish"}


@pytest.mark.parametrize("arch", ARCHS)
def test_activation_switch(arch):
    model = build_model(arch, 10, width=0.25, activation="swish")
    kinds = {type(m) for m in model.modules()}
    assert nn.SiLU in kinds and nn.ReLU not in kinds
    relu = build_model(arch, 10, width=0.25)
    n_act = sum(isinstance(m, nn.SiLU) for m in model.modules())
    assert n_act == sum(isinstance(m, nn.ReLU) for m in relu.modules())


def test_scale_width():
    assert scale_width(64, 0.125) == 8
    assert scale_width(6, 0.1) == 1
    assert scale_width(16, 1.5) == 24


def test_width_multiplier_scales_channels():
    model = build_model("resnet18", 10, width=0.125)
    assert model.conv1.conv.out_channels == 8
    widths = [layer[-1].conv2.conv.out_channels for _, layer in stages(model)]
    assert widths == [8, 16, 32, 64]
    assert model.fc.in_features == 64
    assert build_model("resnet50", 10, width=0.125).fc.in_features == 256
    assert build_model("resnet20", 10, width=0.5).fc.in_features == 32
    assert build_model("vgg16", 10, width=0.5).fc.in_features == 256
    assert build_model("mobilenet", 10, width=0.5).fc.in_features == 512
    lenet = build_model("lenet5", 10, in_channels=1, input_size=28, width=2.0)
    assert (lenet.conv1.out_channels, lenet.conv2.out_channels, lenet.fc.in_features) == (12, 32, 168)


def test_stages():
    model = build_model("resnet18", 10, width=0.125)
    assert [name for name, _ in stages(model)] == ["layer1", "layer2", "layer3", "layer4"]
    assert stages(model)[0][1] is model.layer1
    assert [n for n, _ in stages(build_model("resnet56", 10, width=0.25))] == ["layer1", "layer2", "layer3"]

    vgg = build_model("vgg16", 10, width=0.25)
    vgg_stages = stages(vgg)
    assert len(vgg_stages) == 5
    assert [sum(isinstance(m, ConvBN) for m in s.modules()) for _, s in vgg_stages] == [2, 2, 3, 3, 3]
    assert vgg.get_submodule(vgg_stages[2][0]) is vgg_stages[2][1]

    assert len(stages(build_model("mobilenet", 10, width=0.25))) == 4
    lenet = build_model("lenet5", 10, in_channels=1, input_size=28)
    assert [n for n, _ in stages(lenet)] == ["conv1", "conv2", "fc"]

    for arch in ARCHS:
        model = build_model(arch, 10, width=0.25)
        params = {id(p) for p in model.parameters()}
        for _, stage in stages(model):
            stage_params = [id(p) for p in stage.parameters()]
            assert stage_params and set(stage_params) <= params


def test_vgg_skips_pools_for_small_inputs():
    vgg = build_model("vgg16", 10, in_channels=1, input_size=8, width=0.25)
    assert sum(isinstance(m, nn.MaxPool2d) for m in vgg.modules()) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in build_model("vgg16", 10, width=0.25).modules()) == 5


def test_resnet_a_kaiming_init_leaves_extra_skip_weights():
    torch.manual_seed(0)
    model = build_model("resnet20", 10, extra_skip=True)
    assert torch.all(model.layer1[0].conv1.skip_conv.weight == 1e-4)
    std = model.layer3[1].conv1.conv.weight.std().item()
    assert abs(std - (2 / (64 * 9)) ** 0.5) < 0.01  # Kaiming normal, fan_in, gain sqrt(2)


def test_strided_1x1_conv_on_few_channels_is_the_same_conv_without_onednns_heap_overrun():
    """The shape whose weight gradient oneDNN's AVX2 1x1 kernel computes past its buffer (channels-last fp32,
    1x1, stride 2, 2-7 input channels: layers.conv2d): 20 steps of it run (the unguarded kernel corrupts the
    heap on an AVX2 CPU), and forward and weight gradient equal the contiguous-layout conv's."""
    from ticketlab.models.layers import conv2d
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False)
    ref = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False)
    ref.load_state_dict(conv.state_dict())
    conv.to(memory_format=torch.channels_last)
    for _ in range(20):
        x = torch.randn(256, 4, 8, 8)
        out = conv2d(conv, x.contiguous(memory_format=torch.channels_last))
        expected = ref(x)
        assert out.shape == expected.shape == (256, 8, 4, 4)
        assert torch.allclose(out, expected, rtol=1e-5, atol=1e-6)
        out.square().sum().backward()
        expected.square().sum().backward()
        assert torch.allclose(conv.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)
        conv.weight.grad = ref.weight.grad = None
    wide = torch.nn.Conv2d(8, 16, 1, stride=2, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(16, 8, 8, 8).contiguous(memory_format=torch.channels_last)
    assert torch.equal(conv2d(wide, x), wide(x))  # elsewhere: the conv itself
