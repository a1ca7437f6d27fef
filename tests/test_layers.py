"""The renderer's batched convolutions compute what the reference per-frame arithmetic computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anitalker_core.models.layers import ModulatedConv2d, StyledConv, fused_leaky_relu, upsample_conv, upsample_phases


@pytest.mark.parametrize("size", [(1, 3, 5, 4), (2, 8, 7, 9)])
def test_four_phase_convolutions_equal_the_stride_2_transposed_convolution(size):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*size, generator=g)
    w = torch.randn(6, size[1], 3, 3, generator=g)
    want = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
    got = upsample_conv(x, upsample_phases(w), border=2)
    assert torch.equal(got[..., :2, :], torch.zeros_like(got[..., :2, :]))  # the border is zero
    assert torch.allclose(got[..., 2:-2, 2:-2], want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("upsample,demodulate", [(False, True), (True, True), (False, False)])
@torch.inference_mode()  # weights without version counters: only the load hook can tell the cache they changed
def test_batched_path_equals_the_per_frame_reference_and_follows_loaded_weights(upsample, demodulate):
    torch.manual_seed(0)
    conv = ModulatedConv2d(16, 8, 3 if demodulate else 1, 32, demodulate=demodulate, upsample=upsample).eval()
    x, style = torch.randn(3, 16, 8, 8), torch.randn(3, 32)

    def reference(frames: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(frames[i: i + 1], styles[i: i + 1]) for i in range(frames.shape[0])])

    with torch.no_grad():
        assert torch.allclose(conv(x, style), reference(x, style), atol=1e-5, rtol=1e-4)
        state = {k: torch.randn_like(v) if k == "weight" else v for k, v in conv.state_dict().items()}
        conv.load_state_dict(state)  # the weights prepared for batches must follow
        assert torch.allclose(conv(x, style), reference(x, style), atol=1e-5, rtol=1e-4)


def test_styled_conv_folds_bias_and_activation_into_the_convolution():
    torch.manual_seed(1)
    layer = StyledConv(8, 8, 32).eval()
    with torch.no_grad():
        layer.activate.bias.normal_()
        x, style = torch.randn(2, 8, 6, 6), torch.randn(2, 32)
        want = torch.cat([fused_leaky_relu(layer.conv(x[i: i + 1], style[i: i + 1]), layer.activate.bias)
                          for i in range(2)])
        assert torch.allclose(layer(x, style), want, atol=1e-5, rtol=1e-4)


@torch.inference_mode()
def test_the_gpu_kernel_fused_with_the_blur_equals_the_cpu_phase_form():
    """CUDA runs the upsampling and its blur as one 6x6 transposed convolution; no GPU is needed to check its
    arithmetic against the CPU's phase convolutions and separate blur."""
    torch.manual_seed(2)
    conv = ModulatedConv2d(8, 6, 3, 32, upsample=True).eval()
    x, style = torch.randn(2, 8, 5, 5), torch.randn(2, 32)
    s = conv.modulation(style)
    phased, gain = conv._input_modulated(x, s)
    fused = conv._prepare(torch.float32, cuda=True)["fused"]
    together = F.conv_transpose2d(x * (s * conv.scale)[:, :, None, None], fused, stride=2, padding=2)
    assert together.shape == phased.shape and gain is not None
    assert torch.allclose(together, phased, atol=1e-5, rtol=1e-4)
