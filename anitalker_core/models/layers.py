"""StyleGAN2-style building blocks of the stage-1 motion autoencoder (LIA lineage).

Parameter names and shapes follow the released stage-1 checkpoint, so these modules load it unchanged.
What differs from a textbook implementation is all for speed, without changing the maths:

* FIR filtering (blur, 2x upsampling) is a depthwise convolution instead of a generic upfirdn routine.
* Modulated convolutions scale the *input* by the style and the *output* by the demodulation factor, so a
  batch of frames shares one weight tensor instead of building a grouped convolution per frame; the
  demodulation, bias, leaky ReLU and its gain then take two passes over the output instead of four.
* On CPUs the stride-2 transposed convolution of the upsampling layers is computed as four ordinary
  convolutions, one per output phase (``upsample_conv``): oneDNN runs those on its fast path, while the
  transposed form falls to a slow one and its output is reordered afterwards.
* On CPUs 1x1 convolutions are matrix products (``pointwise``), and what a modulated layer derives from its
  weight (demodulation norms, phase kernels) is made once per weight version (``ModulatedConv2d._prepare``).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) after a bias, rescaled by sqrt(2) to keep unit variance."""
    return F.leaky_relu(x + bias, 0.2) * SQRT2


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Per-channel 2-D convolution (true convolution, so the kernel is flipped) with asymmetric zero padding.

    A single frame is filtered with channels folded into the batch, the reference's arithmetic order (bit-exact);
    batches use a depthwise convolution, several times faster on CPUs and GPUs.
    """
    b, c, h, w = x.shape
    k = torch.flip(kernel, (0, 1)).to(x.dtype)
    if any(pad):
        x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    if b == 1:
        out = F.conv2d(x.reshape(c, 1, x.shape[-2], x.shape[-1]), k[None, None])
        return out.reshape(b, c, out.shape[-2], out.shape[-1])
    return F.conv2d(x, k.expand(c, 1, *k.shape), groups=c)


def zero_stuff(x: torch.Tensor) -> torch.Tensor:
    """Insert a zero after every sample in both spatial directions (the 'up' of upfirdn with factor 2)."""
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, h * 2, w * 2)
    out[:, :, ::2, ::2] = x
    return out


_PHASE_TAPS = ((2, 0), (1,))
"""Kernel taps of a 3x3, stride-2 transposed convolution that reach the even (first) and odd (second) output rows
(or columns), in the order an ordinary convolution over the input, padded by one, meets them."""


def upsample_phases(weight: torch.Tensor) -> list[torch.Tensor]:
    """The four phase kernels of a (out, in, 3, 3) weight for ``upsample_conv`` (2x2, 2x1, 1x2 and 1x1 taps)."""
    return [weight[:, :, rows][:, :, :, cols].contiguous() for rows in _PHASE_TAPS for cols in _PHASE_TAPS]


def upsample_conv(x: torch.Tensor, phases: list[torch.Tensor], border: int = 0) -> torch.Tensor:
    """``conv_transpose2d(x, weight.transpose(0, 1), stride=2)`` for a (out, in, 3, 3) weight given as its
    ``upsample_phases``: four ordinary convolutions, one per output phase (the same multiply-adds), each written
    straight into its strided place. ``border`` zero pixels around the result are part of the same tensor, so a
    blur that pads the result reads it without another copy."""
    b, _, h, w = x.shape
    out = x.new_zeros(b, phases[0].shape[0], 2 * h + 1 + 2 * border, 2 * w + 1 + 2 * border)
    for k, phase in enumerate(phases):
        a, c = divmod(k, 2)
        y = F.conv2d(x, phase, padding=(1 - a, 1 - c))
        out[:, :, border + a: border + a + 2 * y.shape[2]: 2, border + c: border + c + 2 * y.shape[3]: 2] = y
    return out


class Blur(nn.Module):
    """Anti-aliasing FIR filter; the kernel is a buffer stored in the checkpoint."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = torch.outer(k, k)
        self.register_buffer("kernel", k / k.sum() * gain)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fir_filter(x, self.kernel, self.pad)


class Upsample(nn.Module):
    """2x upsampling with the [1,3,3,1] filter, used on the RGB and flow skip connections."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = torch.outer(k, k)
        self.register_buffer("kernel", k / k.sum() * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fir_filter(zero_stuff(x), self.kernel, (2, 1))


class EqualLinear(nn.Module):
    """Linear layer with the equalized-learning-rate scale applied at run time."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[-1] == 1 and self.stride == 1 and not x.is_cuda:
            return pointwise(x, (self.weight[:, :, 0, 0] * self.scale)[None], self.bias)
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A 1x1 convolution with a (1 or B, out, in) weight, as one matrix product per frame: on CPUs oneDNN's 1x1
    kernels over few output channels and many pixels reorder the activations first, a matrix product reads them
    where they lie. Also takes a per-frame weight, which spares a modulated layer its pass over the input."""
    b, c, h, w = x.shape
    out = torch.matmul(weight.to(x.dtype), x.reshape(b, c, h * w))
    if bias is not None:
        out = out + bias.to(x.dtype)[:, None]
    return out.view(b, -1, h, w)


def conv_layer(in_ch: int, out_ch: int, kernel: int, downsample: bool = False, activate: bool = True) -> nn.Sequential:
    """Conv (+ optional blur-then-stride-2 downsampling) (+ optional fused leaky ReLU), keyed like the checkpoint."""
    layers: list[nn.Module] = []
    if downsample:
        p = 2 + (kernel - 1)
        layers.append(Blur(((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_ch, out_ch, kernel, stride=2, padding=0, bias=False))
    else:
        layers.append(EqualConv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False))
    if activate:
        layers.append(FusedLeakyReLU(out_ch))
    return nn.Sequential(*layers)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution, optionally demodulated and/or upsampling by 2."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = 2 - (kernel - 1)
            self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        self._prepared: Optional[tuple[tuple, dict[str, Any]]] = None
        self.register_load_state_dict_post_hook(lambda module, _: module.forget_prepared())

    def forget_prepared(self) -> None:
        """Drop the weights prepared for the batched path (called automatically after loading weights)."""
        self._prepared = None

    def _prepare(self, dtype: torch.dtype, cuda: bool) -> dict[str, Any]:
        """What the batched path derives from the weight, made once per weight version and dtype rather than for
        every batch: squared norms for the demodulation, and the upsampling's phase kernels (or, on CUDA, the
        kernel fused with the blur). The equalised-lr scale is not baked in: it rides on the style."""
        w = self.weight
        try:
            version = w._version
        except RuntimeError:  # inference tensors carry no version counter; loads still refresh via the hook
            version = -1
        key = (w.data_ptr(), w.device, version, dtype, cuda)
        if self._prepared is not None and self._prepared[0] == key:
            return self._prepared[1]
        with torch.no_grad():
            ready: dict[str, Any] = {"w2": (w[0].float() * self.scale).pow(2).sum((2, 3))}
            if self.upsample and cuda:
                ready["fused"] = self._fused_upsample_weight().to(dtype).transpose(0, 1).contiguous()
            elif self.upsample:
                ready["phases"] = upsample_phases(w[0].to(dtype))
            else:
                ready["weight"] = w[0].to(dtype)
        self._prepared = (key, ready)
        return ready

    def forward(self, x: torch.Tensor, style: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``bias`` (1,out,1,1): also apply the bias and the scaled leaky ReLU (``fused_leaky_relu``)."""
        s = self.modulation(style)
        if x.shape[0] == 1:
            out = self._weight_modulated(x, s)
            return out if bias is None else fused_leaky_relu(out, bias)
        out, gain = self._input_modulated(x, s)
        if bias is None:
            return out if gain is None else out * gain.to(out.dtype)[:, :, None, None]
        # leaky ReLU is positively homogeneous: lrelu(y * d + b) * sqrt2 = lrelu(y * (d * sqrt2) + b * sqrt2)
        b = (bias * SQRT2).to(out.dtype)
        if gain is None:
            return F.leaky_relu_(torch.add(b, out, alpha=SQRT2), 0.2)
        return F.leaky_relu_(torch.addcmul(b, out, (gain * SQRT2).to(out.dtype)[:, :, None, None]), 0.2)

    def _weight_modulated(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Reference arithmetic: fold the style into a per-frame weight (bit-exact for single frames)."""
        b, _, h, w = x.shape
        k = self.kernel_size
        weight = self.scale * self.weight * s.view(b, 1, self.in_ch, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, self.out_ch, 1, 1, 1)
        weight = weight.to(x.dtype)
        x = x.reshape(1, b * self.in_ch, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.view(b, self.out_ch, out.shape[-2], out.shape[-1]))
        out = F.conv2d(x, weight.view(b * self.out_ch, self.in_ch, k, k), padding=k // 2, groups=b)
        return out.view(b, self.out_ch, out.shape[-2], out.shape[-1])

    def _fused_upsample_weight(self) -> torch.Tensor:
        """The 3x3 transposed-conv kernel convolved with the blur: one 6x6 stride-2 transposed conv does both.

        On GPUs this trades a few more tensor-core FLOPs for a whole memory-bound blur pass.
        """
        w = self.weight[0].float()  # (out, in, 3, 3); the equalised-lr scale rides on the style
        k = self.blur.kernel.float()
        o, i, kh, kw = w.shape
        big = F.conv2d(F.pad(w.reshape(o * i, 1, kh, kw), (3, 3, 3, 3)), k[None, None])
        return big.reshape(o, i, kh + 3, kw + 3)

    def _input_modulated(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Batched form: conv(x * s, w) * d equals conv(x, w * s * d), with one weight shared by all frames.
        Returns conv(x * s, w) (blurred when upsampling: the blur is per channel, so it commutes with d) and the
        demodulation d (B, out), or None without demodulation, for the caller to fold into what follows."""
        ready = self._prepare(x.dtype, x.is_cuda)
        gain = torch.rsqrt(s.float().pow(2) @ ready["w2"].t() + 1e-8) if self.demodulate else None
        if self.kernel_size == 1 and not x.is_cuda:
            return pointwise(x, ready["weight"][:, :, 0, 0][None] * (s * self.scale).to(x.dtype)[:, None, :]), gain
        x = x * (s * self.scale).to(x.dtype)[:, :, None, None]
        if "fused" in ready:
            return F.conv_transpose2d(x, ready["fused"], stride=2, padding=2), gain
        if "weight" in ready:
            return F.conv2d(x, ready["weight"], padding=self.kernel_size // 2), gain
        out = upsample_conv(x, ready["phases"], border=self.blur.pad[0])
        return fir_filter(out, self.blur.kernel, (0, 0)), gain


class NoiseInjection(nn.Module):
    """Kept for checkpoint compatibility: inference adds no noise, so this is the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # the noise is the identity at inference, so the activation folds into the convolution's last pass
        return self.conv(x, style, bias=self.activate.bias)
