"""Tests of the U-Net family: one shared tester over every registered model, then specifics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geounet.errors import (
    BandMismatchError,
    ChipSizeError,
    ConfigError,
    InputFileError,
    ModelFileError,
)
from geounet.models import (
    UNet,
    UNetConfig,
    adapt_first_conv,
    create_model,
    describe_model,
    list_models,
    model_options,
    predict_classes,
    predict_proba,
    valid_input_size,
    valid_output_size,
)

# Small but complete configurations: every code path, a fraction of the compute.
SMALL: dict[str, dict] = {
    "unet": {"depth": 3, "base_channels": 8},
    "residual_unet": {"depth": 3, "base_channels": 8},
    "attention_unet": {"depth": 3, "base_channels": 8},
    "unet_plus_plus": {"depth": 3, "base_channels": 8, "deep_supervision": True},
    "unet3d": {"depth": 2, "base_channels": 4},
    "efficient_unet": {"decoder_channels": (32, 16, 16, 8, 8)},
}
# Odd heights and widths that are no multiple of 2**depth.
ODD = (101, 67)
DATES = 3


def make_input(name: str, in_channels: int, size: tuple[int, int] = ODD, batch: int = 2):
    if name == "unet3d":
        return torch.randn(batch, in_channels, DATES, *size)
    return torch.randn(batch, in_channels, *size)


def build(name: str, in_channels: int = 13, num_classes: int = 4, **extra):
    torch.manual_seed(0)
    return create_model(
        name, in_channels=in_channels, num_classes=num_classes, **{**SMALL[name], **extra}
    )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_registered_model_has_a_test_config():
    assert list_models() == sorted(SMALL)


# --- the shared tester -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_backward_13_bands_odd_size(name):
    model = build(name)
    x = make_input(name, 13)
    out = model(x)
    assert out.shape == (2, 4, *ODD)
    assert out.dtype == torch.float32
    out.square().mean().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_inference_mode_channels_last(name):
    model = build(name).eval()
    x = make_input(name, 13, size=(64, 48), batch=1)
    layout = torch.channels_last_3d if name == "unet3d" else torch.channels_last
    model = model.to(memory_format=layout)
    with torch.inference_mode():
        out = model(x.to(memory_format=layout))
        reference = model(x)
    assert out.shape == (1, 4, 64, 48)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_exposes_its_io_and_rebuilds_from_its_description(name):
    model = build(name, in_channels=5, num_classes=3)
    assert (model.in_channels, model.num_classes) == (5, 3)
    description = describe_model(model)
    assert description["name"] == name
    rebuilt = create_model(
        name,
        in_channels=description["in_channels"],
        num_classes=description["num_classes"],
        **description["options"],
    )
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


@pytest.mark.parametrize("name", sorted(SMALL))
def test_wrong_band_count_is_a_band_mismatch(name):
    model = build(name, in_channels=4)
    with pytest.raises(BandMismatchError, match="4 input bands"):
        model(make_input(name, 3, size=(32, 32), batch=1))


@pytest.mark.parametrize("name", ["unet", "efficient_unet", "residual_unet"])
@pytest.mark.parametrize("in_channels", [1, 4, 13])
def test_any_band_count(name, in_channels):
    model = build(name, in_channels=in_channels, num_classes=1).eval()
    with torch.inference_mode():
        out = model(make_input(name, in_channels, size=(45, 70), batch=1))
    assert out.shape == (1, 1, 45, 70)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (17, 3), (64, 64), (65, 130)])
def test_same_padding_unet_takes_any_size(size):
    model = build("unet", in_channels=2, num_classes=3).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 2, *size))
    assert out.shape == (1, 3, *size)


def test_padding_does_not_change_a_fitting_input():
    """Cropping back after padding keeps the result of an input that needed no padding."""
    model = build("unet", in_channels=2, num_classes=2).eval()
    x = torch.randn(1, 2, 48, 40)  # multiples of 2**3
    with torch.inference_mode():
        direct = model._logits(x)
        out = model(x)
    torch.testing.assert_close(out, direct)


# --- registry ---------------------------------------------------------------------------------


def test_unknown_model_name_lists_valid_names_and_suggests():
    with pytest.raises(ConfigError, match=r"valid models are .*Did you mean 'unet3d'\?"):
        create_model("unet3", in_channels=3, num_classes=2)


def test_unknown_option_lists_valid_options_and_suggests():
    with pytest.raises(ConfigError, match=r"'dpth'.*Did you mean 'depth'\?"):
        create_model("unet", in_channels=3, num_classes=2, dpth=3)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("depth", 0),
        ("base_channels", 2.5),
        ("up_mode", "bilinaer"),
        ("padding", "full"),
        ("dropout", 1.0),
        ("batch_norm", "yes"),
    ],
)
def test_bad_option_values_are_config_errors(option, value):
    with pytest.raises(ConfigError, match=option):
        create_model("unet", in_channels=3, num_classes=2, **{option: value})


def test_bad_in_channels_is_a_config_error():
    with pytest.raises(ConfigError, match="in_channels"):
        create_model("unet", in_channels=0, num_classes=2)


def test_model_options_lists_defaults():
    options = model_options("unet")
    assert options == {
        "depth": 4,
        "base_channels": 64,
        "batch_norm": True,
        "up_mode": "transpose",
        "dropout": 0.0,
        "padding": "same",
    }
    assert model_options("unet3d")["temporal_output"] == "collapse"
    assert model_options("efficient_unet")["encoder"] == "efficientnet_b0"
    for name in list_models():
        assert isinstance(model_options(name), dict)


def test_string_options_accept_yaml_spelling():
    model = create_model("unet", in_channels=3, num_classes=2, up_mode="BILINEAR", dropout=0.1)
    assert model.config.up_mode == "bilinear"
    assert isinstance(model, UNet)


# --- the two exact reproductions -----------------------------------------------------------


def test_seed_sketch_is_one_unet_configuration():
    """Levels 64 and 128, bottleneck 256, transposed convolutions, no BN, 1 band, 1 output."""
    model = create_model(
        "unet",
        in_channels=1,
        num_classes=1,
        depth=2,
        base_channels=64,
        batch_norm=False,
        up_mode="transpose",
    )
    assert n_params(model) == 1_861_697
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),  # encoder, bottleneck
        (256, 128), (128, 128), (128, 64), (64, 64),  # decoder after concatenation
        (64, 1),  # 1x1 head
    ]  # fmt: skip
    assert [(u.in_channels, u.out_channels) for u in ups] == [(256, 128), (128, 64)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.inference_mode():
        proba = predict_proba(model.eval()(torch.randn(1, 1, 64, 64)))
    assert proba.shape == (1, 1, 64, 64)
    assert ((proba >= 0) & (proba <= 1)).all()


def paper_unet(base_channels: int = 64) -> UNet:
    config = UNetConfig(depth=4, base_channels=base_channels, batch_norm=False, padding="valid")
    return UNet(1, 2, config=config)


def test_paper_unet_parameter_count():
    assert n_params(paper_unet()) == 31_030_658


def test_valid_size_helpers():
    assert valid_output_size(572) == 388
    assert valid_input_size(388) == 572
    assert (572 - 388) // 2 == 92  # the paper's overlap-tile margin
    assert valid_input_size(380) == 572  # the smallest input whose output covers 380
    assert valid_output_size(valid_input_size(1, depth=2), depth=2) >= 1
    for depth in (1, 2, 3, 4, 5):
        for out in (1, 17, 100):
            size = valid_input_size(out, depth=depth)
            assert valid_output_size(size, depth=depth) >= out
            assert size - valid_output_size(size, depth=depth) == 12 * 2**depth - 8


def test_valid_size_helper_rejects_sizes_that_do_not_pool_evenly():
    with pytest.raises(ChipSizeError, match=r"\[556, 572\]"):
        valid_output_size(570)
    with pytest.raises(ChipSizeError):
        valid_output_size(100)
    model = paper_unet(base_channels=2)
    with pytest.raises(ChipSizeError):
        model(torch.randn(1, 1, 570, 570))


def test_paper_unet_maps_572_to_388_narrow():
    """Sizes do not depend on width: check the arithmetic cheaply, width 2."""
    model = paper_unet(base_channels=2).eval()
    assert model.output_size(572, 572) == (388, 388)
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 572, 572)).shape == (1, 2, 388, 388)


@pytest.mark.slow
def test_paper_unet_maps_572_to_388_full_width():
    model = paper_unet().eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)


# --- export ---------------------------------------------------------------------------------


def test_unet_torch_export_matches_eager():
    model = build("unet", in_channels=13, num_classes=4).eval()
    x = torch.randn(1, 13, 100, 132)
    program = torch.export.export(model, (x,))
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_unet_onnx_export(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    model = build("unet", in_channels=13, num_classes=4).eval()
    path = tmp_path / "unet.onnx"
    torch.onnx.export(model, (torch.randn(1, 13, 100, 132),), str(path), dynamo=True)
    onnx.checker.check_model(str(path))


# --- variant specifics ----------------------------------------------------------------------


def test_unet_options_change_the_network():
    plain = build("unet", batch_norm=False, up_mode="bilinear", dropout=0.2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in plain.modules())
    assert any(isinstance(m, nn.Dropout2d) for m in plain.modules())
    out = plain(torch.randn(2, 13, 30, 20))
    assert out.shape == (2, 4, 30, 20)


def test_unet_plus_plus_deep_supervision():
    model = build("unet_plus_plus").eval()
    x = torch.randn(1, 13, 40, 36)
    with torch.inference_mode():
        heads = model.forward_heads(x)
        out = model(x)
    assert len(heads) == 3
    assert all(h.shape == (1, 4, 40, 36) for h in heads)
    torch.testing.assert_close(out, torch.stack(heads).mean(0))
    single = build("unet_plus_plus", deep_supervision=False)
    assert len(single.heads) == 1
    assert single(x).shape == (1, 4, 40, 36)


@pytest.mark.parametrize("dates", [1, 2, 5])
def test_unet3d_temporal_outputs(dates):
    x = torch.randn(1, 13, dates, 21, 18)
    collapse = build("unet3d").eval()
    keep = build("unet3d", temporal_output="keep").eval()
    with torch.inference_mode():
        assert collapse(x).shape == (1, 4, 21, 18)
        assert keep(x).shape == (1, 4, dates, 21, 18)


def test_unet3d_needs_a_time_axis():
    with pytest.raises(ValueError, match="B x C x T x H x W"):
        build("unet3d")(torch.randn(1, 13, 16, 16))


def test_predict_proba_and_classes():
    binary = torch.tensor([[[[0.0, 2.0], [-2.0, 0.1]]]])
    torch.testing.assert_close(predict_proba(binary), torch.sigmoid(binary))
    assert predict_classes(binary).tolist() == [[[0, 1], [0, 1]]]
    multi = torch.randn(2, 4, 3, 5)
    proba = predict_proba(multi)
    torch.testing.assert_close(proba.sum(1), torch.ones(2, 3, 5))
    torch.testing.assert_close(predict_classes(multi), multi.argmax(1))
    with pytest.raises(ValueError):
        predict_proba(torch.randn(4, 4))


# --- encoder weights from local files (never downloaded) ----------------------------------


def test_efficient_unet_loads_its_own_encoder_weights(tmp_path):
    from safetensors.torch import save_file

    source = build("efficient_unet", in_channels=13)
    path = tmp_path / "encoder.safetensors"
    save_file(
        {f"encoder.{k}": v.contiguous() for k, v in source.encoder.state_dict().items()}, path
    )
    loaded = build("efficient_unet", in_channels=13, encoder_weights=str(path))
    for key, value in source.encoder.state_dict().items():
        torch.testing.assert_close(loaded.encoder.state_dict()[key], value)


@pytest.mark.parametrize("in_channels", [1, 13])
def test_efficient_unet_adapts_three_band_weights(tmp_path, in_channels):
    import timm

    torch.manual_seed(1)
    rgb = timm.create_model("efficientnet_b0", in_chans=3, pretrained=False)
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)  # a full classifier state dict, head keys included
    model = build("efficient_unet", in_channels=in_channels, encoder_weights=str(path))
    stem = model.encoder.conv_stem.weight.detach()
    source = rgb.conv_stem.weight.detach()
    if in_channels == 1:
        torch.testing.assert_close(stem, source.sum(1, keepdim=True))
    else:
        for band in range(in_channels):
            torch.testing.assert_close(stem[:, band], source[:, band % 3] * 3 / in_channels)
    torch.testing.assert_close(model.encoder.bn1.weight, rgb.bn1.weight)
    assert model(torch.randn(1, in_channels, 33, 47)).shape == (1, 4, 33, 47)


def test_resnet_encoder_takes_torchgeo_style_weights(tmp_path):
    """torchgeo's Sentinel-2 checkpoints are timm state dicts with 13-band stems."""
    import timm

    torch.manual_seed(2)
    resnet = timm.create_model("resnet18", in_chans=13, pretrained=False)
    path = tmp_path / "resnet18_s2.pth"
    torch.save(resnet.state_dict(), path)  # fc.* included, as in torchgeo's files
    model = create_model(
        "efficient_unet",
        in_channels=13,
        num_classes=4,
        encoder="resnet18",
        encoder_weights=str(path),
        decoder_channels=(32, 16, 16, 8, 8),
    )
    torch.testing.assert_close(model.encoder.conv1.weight, resnet.conv1.weight)
    assert describe_model(model)["options"]["encoder_weights"] is None
    with torch.inference_mode():
        assert model.eval()(torch.randn(1, 13, 45, 31)).shape == (1, 4, 45, 31)


def test_register_model_extends_the_registry():
    from geounet.models import MODELS, register_model

    register_model("tiny_unet", UNet, UNetConfig)
    try:
        assert "tiny_unet" in list_models()
        model = create_model("tiny_unet", in_channels=2, num_classes=2, depth=1, base_channels=4)
        assert describe_model(model)["name"] in ("unet", "tiny_unet")
        with pytest.raises(ConfigError, match="already registered"):
            register_model("tiny_unet", UNet, UNetConfig)
    finally:
        MODELS.pop("tiny_unet")


def test_adapt_first_conv_keeps_constant_input_response():
    weight = torch.randn(8, 3, 3, 3)
    adapted = adapt_first_conv(weight, 12)
    x3, x12 = torch.ones(1, 3, 5, 5), torch.ones(1, 12, 5, 5)
    torch.testing.assert_close(
        nn.functional.conv2d(x12, adapted), nn.functional.conv2d(x3, weight), rtol=1e-4, atol=1e-4
    )
    assert adapt_first_conv(weight, 13).shape == (8, 13, 3, 3)
    assert adapt_first_conv(weight, 3) is weight


def test_encoder_weights_errors(tmp_path):
    with pytest.raises(InputFileError):
        build("efficient_unet", encoder_weights=str(tmp_path / "missing.pth"))
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ModelFileError, match="lacks"):
        build("efficient_unet", encoder_weights=str(path))
    pickled = tmp_path / "pickled.pth"
    torch.save({"weights": object()}, pickled)
    with pytest.raises(ModelFileError):
        build("efficient_unet", encoder_weights=str(pickled))


def test_unknown_encoder_suggests_a_timm_name():
    with pytest.raises(ConfigError, match="efficientnet_b0"):
        create_model("efficient_unet", in_channels=3, num_classes=2, encoder="efficientnet_bO")


def test_decoder_channels_must_match_encoder_features():
    with pytest.raises(ConfigError, match="one channel count per feature map"):
        create_model("efficient_unet", in_channels=3, num_classes=2, decoder_channels=(16, 8))
