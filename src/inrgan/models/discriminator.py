"""StyleGAN2 residual discriminator in pure PyTorch (blur-downsampling as a plain depthwise convolution)."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import DiscriminatorConfig
from .layers import LRELU_GAIN, LRELU_SLOPE, EqualLinear, normalize_2nd_moment


def blur_kernel(taps: tuple[int, ...] = (1, 3, 3, 1)) -> Tensor:
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k / k.sum()  # [4, 4]


# Devices where the blur's input gradient is its adjoint filter (:class:`_Blur`) rather than torch's
# grouped-convolution backward. On the CPU the latter is faster (D forward + backward 75 against 86 ms,
# R1 347 against 367 ms for `cpu-32`), and its second derivative costs little there.
ADJOINT_BLUR_DEVICES = frozenset({"cuda"})


def blur(x: Tensor, kernel: Tensor, pad: int, stride: int = 1) -> Tensor:
    """Depthwise FIR filter with zero padding ``pad`` on every side: [B, C, H, W] -> [B, C, H', W']."""
    c = x.shape[1]
    weight = kernel.to(x.dtype)[None, None].expand(c, 1, -1, -1)
    if x.device.type in ADJOINT_BLUR_DEVICES:
        return _Blur.apply(x, weight, stride, pad)
    return F.conv2d(x, weight, stride=stride, padding=pad, groups=c)


class _Blur(torch.autograd.Function):
    """The depthwise filter, with its input gradient written as the adjoint filter.

    torch differentiates a grouped convolution twice (R1's gradient of a gradient) with one convolution per
    group: 4,948 convolutions and 6.0 s for one R1 step of the 256^2 discriminator at batch 16 on an H200,
    against 45 ms for a forward and backward pass. Here the input gradient is a transposed grouped
    convolution, an ordinary differentiable operation, so the second derivative is one convolution backward.
    The filter is a constant (no gradient). Equal to the grouped convolution's derivatives (first and second)
    to rounding; its speed on a GPU is not measured yet.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride: int, pad: int) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.stride, ctx.pad, ctx.size = stride, pad, x.shape
        return F.conv2d(x, weight, stride=stride, padding=pad, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (weight,) = ctx.saved_tensors
        grad_x = torch.nn.grad.conv2d_input(ctx.size, weight, grad, stride=ctx.stride, padding=ctx.pad,
                                            groups=weight.shape[0])
        return grad_x, None, None, None


class Conv2dLayer(nn.Module):
    """Equalized-lr convolution, optional blur-downsampling by 2, bias, activation, clamp."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool = True, activation: str = "lrelu",
                 down: bool = False, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.kernel, self.down, self.activation, self.conv_clamp = kernel, down, activation, conv_clamp
        self.register_buffer("resample_filter", blur_kernel(), persistent=False)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        """act(conv(x, W) + b) * gain, with act = leaky ReLU(0.2) * sqrt(2) or identity; ``gain`` > 0."""
        # act(z) * g = act(g z) for g > 0: the gains scale the weight and the bias instead of the output,
        # and the bias is added by the convolution.
        act_gain = gain * (LRELU_GAIN if self.activation == "lrelu" else 1.0)
        w = (self.weight * (self.weight_gain * act_gain)).to(x.dtype)
        b = (self.bias * act_gain).to(x.dtype) if self.bias is not None else None
        if self.down and self.kernel == 1:
            x = blur(x, self.resample_filter, pad=1, stride=2)  # [B, C, H/2, W/2]
            x = F.conv2d(x, w, b)
        elif self.down:
            x = blur(x, self.resample_filter, pad=2)  # [B, C, H+1, W+1]
            x = F.conv2d(x, w, b, stride=2)  # [B, C', H/2, W/2]
        else:
            x = F.conv2d(x, w, b, padding=self.kernel // 2)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, LRELU_SLOPE)
        if self.conv_clamp is not None and x.dtype != torch.float32:
            x = x.clamp(-self.conv_clamp * gain, self.conv_clamp * gain)
        return x


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_ch: int, tmp_ch: int, out_ch: int, img_channels: int, use_fp16: bool,
                 conv_clamp: float | None) -> None:
        super().__init__()
        self.use_fp16 = use_fp16
        clamp = conv_clamp if use_fp16 else None
        self.fromrgb = Conv2dLayer(img_channels, tmp_ch, 1, conv_clamp=clamp) if in_ch == 0 else None
        self.conv0 = Conv2dLayer(tmp_ch, tmp_ch, 3, conv_clamp=clamp)
        self.conv1 = Conv2dLayer(tmp_ch, out_ch, 3, down=True, conv_clamp=clamp)
        self.skip = Conv2dLayer(tmp_ch, out_ch, 1, bias=False, activation="linear", down=True)

    def forward(self, x: Tensor | None, img: Tensor) -> Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


def mbstd_groups(n: int, group_size: int) -> int:
    """Samples per minibatch-std group for a batch of n: the largest size <= group_size that divides n.

    Sample i belongs to group i % (n // g): the groups are strided over the batch."""
    g = min(group_size, n)
    while n % g:
        g -= 1
    return g


def mbstd_micro_batches(n: int, group_size: int, size: int) -> list[Tensor]:
    """Indices that cut a batch of n into micro-batches of about ``size`` samples made of whole
    minibatch-std groups, each ordered so that D, run on it alone, forms the same groups: every sample's
    logit (and its gradient) is then the same as in the whole batch."""
    g = mbstd_groups(n, group_size)
    m = n // g  # groups
    k = max(1, min(m, size // g))  # groups per micro-batch
    if mbstd_groups(k * g, group_size) != g:  # a micro-batch would regroup: one group each
        k = 1
    # group j holds samples j, j + m, j + 2m, ...; a micro-batch of groups [j0, j1) lists them row by row
    return [(torch.arange(j0, min(j0 + k, m))[None, :] + m * torch.arange(g)[:, None]).reshape(-1)
            for j0 in range(0, m, k)]


def minibatch_std(x: Tensor, group_size: int, num_channels: int) -> Tensor:
    """Append the std of features over groups of samples: [B, C, H, W] -> [B, C + num_channels, H, W]."""
    n, c, h, w = x.shape
    g = mbstd_groups(n, group_size)
    f = num_channels
    y = x.reshape(g, n // g, f, c // f, h, w)  # [G, M, F, c, H, W]
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, F, c, H, W]
    y = y.mean(dim=(2, 3, 4))  # [M, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # [B, F, H, W]
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, ch: int, mbstd_group_size: int, mbstd_num_channels: int, cmap_dim: int = 0) -> None:
        super().__init__()
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        self.cmap_dim = cmap_dim
        self.conv = Conv2dLayer(ch + mbstd_num_channels, ch, 3)
        self.fc = EqualLinear(ch * 16, ch, activation="lrelu")
        self.out = EqualLinear(ch, cmap_dim or 1)

    def forward(self, x: Tensor, cmap: Tensor | None = None) -> Tensor:
        if self.mbstd_num_channels > 0:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.out(self.fc(self.conv(x).flatten(1)))  # [B, 1], or [B, cmap_dim] for a conditional D
        if cmap is None:
            return x
        # projection (Miyato and Koyama 2018, as in StyleGAN2-ADA): the features' projection on the class embedding
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)  # [B, 1]


def check_d_input(D: nn.Module, img: Tensor, c: Tensor | None) -> None:
    """A ValueError naming what is wrong when ``img`` is not [B, C, R, R] of D's size, or ``c`` does not fit
    whether D is conditional (either discriminator)."""
    if img.ndim != 4 or img.shape[1:] != (D.img_channels, D.resolution, D.resolution):
        raise ValueError(f"D expects [B, {D.img_channels}, {D.resolution}, {D.resolution}], got {list(img.shape)}")
    if (D.embed is None) != (c is None):
        raise ValueError(f"this D is {'un' if D.embed is None else ''}conditional: "
                         f"{'give no c' if D.embed is None else f'give c [B, {D.cfg.c_dim}]'}")


class Discriminator(nn.Module):
    """images [B, C, R, R] in [-1, 1] -> logits [B, 1]."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.resolution, self.img_channels = cfg.resolution, cfg.img_channels
        res_log2 = int(math.log2(cfg.resolution))
        self.block_resolutions = [2**i for i in range(res_log2, 2, -1)]
        fp16_res = max(2 ** (res_log2 + 1 - cfg.num_fp16_res), 8)
        blocks = {}
        for res in self.block_resolutions:
            in_ch = cfg.channels(res) if res < cfg.resolution else 0
            blocks[f"b{res}"] = DiscriminatorBlock(in_ch, cfg.channels(res), cfg.channels(res // 2),
                                                   cfg.img_channels, res >= fp16_res, cfg.conv_clamp)
        for name, block in blocks.items():
            self.add_module(name, block)
        cmap_dim = cfg.channels(4) if cfg.c_dim else 0
        self.b4 = DiscriminatorEpilogue(cfg.channels(4), cfg.mbstd_group_size, cfg.mbstd_num_channels, cmap_dim)
        self.embed = EqualLinear(cfg.c_dim, cmap_dim) if cfg.c_dim else None  # class -> cmap

    def forward(self, img: Tensor, mixed_precision: bool = False, checkpoint_blocks: bool = False,
                c: Tensor | None = None) -> Tensor:
        """Logits [B, 1]; a conditional D takes the one-hot classes ``c`` [B, c_dim]. ``checkpoint_blocks``:
        with autograd, drop each block's activations after its forward and recompute them in the backward
        pass (the same gradients, R1's double backward included, for a second forward of the blocks)."""
        check_d_input(self, img, c)
        cmap = None if c is None else normalize_2nd_moment(self.embed(c.to(img.dtype)))  # [B, cmap_dim]
        if img.device.type == "cpu":
            # oneDNN's convolutions (and their backward) run about 20% faster on channels-last tensors.
            img = img.contiguous(memory_format=torch.channels_last)
        recompute = checkpoint_blocks and torch.is_grad_enabled() and not torch.compiler.is_compiling()
        x = None
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            use_amp = mixed_precision and block.use_fp16 and img.is_cuda
            ctx = torch.autocast("cuda", dtype=torch.float16) if use_amp else contextlib.nullcontext()
            with ctx:  # a checkpoint replays the autocast state of its forward
                x = checkpoint(block, x, img, use_reentrant=False) if recompute else block(x, img)
            if use_amp:
                x = x.float()
        return self.b4(x, cmap)
