"""StyleGAN2's generator (Karras et al. 2020), the paper's baseline, on the same mapping network.

A learned constant 4x4 input; per block a 3x3 modulated and demodulated convolution (the first of a block
after 2x upsampling by a low-pass FIR filter), noise inputs with a learned strength per layer, and a skip
ToRGB whose image is upsampled by the same filter and summed. The upsampling here precedes the 3x3
convolution (StyleGAN2 fuses them into a transposed convolution and a blur). Convolutions mix neighbouring
pixels: the network renders its training grid only, and says so for any other (:class:`GridError`).

Noise: random in training mode, the layer's fixed ``noise_const`` in eval mode (a sample's image is then a
function of its w alone, as renders, metrics and probes need).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import StyleGAN2Config
from .coords import GridError, RenderGrid, default_bbox
from .discriminator import blur_kernel
from .fmm import ToRGB, demodulated, modulate
from .layers import EqualLinear, lrelu_gain
from .synthesis import check_ws, make_grid


def upsample_2x(x: Tensor, kernel: Tensor) -> Tensor:
    """2x upsampling by zero insertion and a low-pass FIR filter (``kernel`` [k, k], sum 1, k even; gain 4 keeps
    the mean): [B, C, H, W] -> [B, C, 2H, 2W]. With [1, 3, 3, 1] an output pixel is (3 a + b) / 4 per axis of
    its two nearest inputs."""
    c, k = x.shape[1], kernel.shape[-1]
    weight = (kernel * 4).to(x.dtype)[None, None].expand(c, 1, -1, -1)
    return F.conv_transpose2d(x, weight, stride=2, padding=(k - 2) // 2, groups=c)


def modulated_conv2d(x: Tensor, weight: Tensor) -> Tensor:
    """Per-sample convolution, same padding: x [B, c_in, H, W], weight [B, c_out, c_in, k, k] -> [B, c_out, H, W]
    (one grouped convolution, a group per sample)."""
    batch, c_in, h, w = x.shape
    c_out, k = weight.shape[1], weight.shape[-1]
    out = F.conv2d(x.reshape(1, batch * c_in, h, w), weight.reshape(batch * c_out, c_in, k, k).to(x.dtype),
                   padding=k // 2, groups=batch)
    return out.reshape(batch, c_out, h, w)


class ModulatedConv(nn.Module):
    """lrelu(conv(x, demod(W * s)) + noise * strength + b) sqrt(2), s = affine(w); ``up``: x upsampled first."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool,
                 fir_taps: tuple[int, ...], kernel: int = 3) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.up = in_channels, out_channels, up
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("fir", blur_kernel(fir_taps), persistent=False)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # x: [B, c_in, H, W] (H/2 with up), w: [B, w_dim] -> [B, c_out, H, W]
        if self.up:
            x = upsample_2x(x, self.fir)
        x = modulated_conv2d(x, demodulated(modulate(self.weight, self.affine(w))))
        if self.training:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        return lrelu_gain(x + noise * self.noise_strength + self.bias.to(x.dtype)[:, None, None])


class StyleGAN2Block(nn.Module):
    """[upsample] conv0, conv1, ToRGB at one resolution; the first block starts from the constant."""

    def __init__(self, cfg: StyleGAN2Config, res: int, in_channels: int) -> None:
        super().__init__()
        c = cfg.channels(res)
        self.res, self.in_channels, self.out_channels = res, in_channels, c
        conv = dict(w_dim=cfg.w_dim, resolution=res, fir_taps=cfg.fir_taps)
        self.conv0 = ModulatedConv(in_channels, c, up=True, **conv) if in_channels else None
        self.conv1 = ModulatedConv(c, c, up=False, **conv)
        self.torgb = ToRGB(c, cfg.img_channels, cfg.w_dim)
        self.num_conv = 2 if in_channels else 1

    def convs(self) -> list[ModulatedConv]:
        return [c for c in (self.conv0, self.conv1) if c is not None]

    def forward(self, x: Tensor, img: Tensor | None, ws: Tensor) -> tuple[Tensor, Tensor]:
        """ws [B, num_conv + 1, w_dim]: one w per convolution, then the ToRGB's."""
        for k, conv in enumerate(self.convs()):
            x = conv(x, ws[:, k])
        rgb = self.torgb(x, ws[:, self.num_conv])
        return x, rgb if img is None else upsample_2x(img, self.conv1.fir) + rgb


class StyleGAN2Synthesis(nn.Module):
    """ws [B, num_ws, w_dim] -> image [B, img_channels, R, R], on the training grid only."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.const = nn.Parameter(torch.randn(cfg.channels(4), 4, 4))
        blocks, in_ch = [], 0
        for res in cfg.block_resolutions:
            blocks.append(StyleGAN2Block(cfg, res, in_ch))
            in_ch = cfg.channels(res)
        self.blocks = nn.ModuleList(blocks)
        # Each block reads its ws from w_idx; its ToRGB shares the next block's first w.
        self.block_w_idx = [sum(b.num_conv for b in self.blocks[:i]) for i in range(len(self.blocks))]
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1

    def check_ws(self, ws: Tensor) -> None:
        check_ws(ws, self.num_ws, self.cfg.w_dim)

    def make_grid(self, height: int | None = None, width: int | None = None, bbox=None) -> RenderGrid:
        """The training grid; any other size or box is a :class:`GridError`."""
        grid = make_grid(self.cfg, height, width, bbox)
        self.check_grid(grid, None)
        return grid

    def check_grid(self, grid: RenderGrid, tile: int | None) -> None:
        r = self.cfg.resolution
        if (grid.height, grid.width) != (r, r) or grid.bbox != default_bbox(self.cfg.grid) \
                or grid.rows is not None or grid.cols is not None or tile is not None:
            raise GridError(f"the stylegan2 generator renders its own {r}x{r} training grid only (convolutions "
                            f"on a fixed grid: no other size, box, window or tile); asked for {grid.height}x"
                            f"{grid.width} over {grid.bbox}" + (f" in tiles of {tile}" if tile else ""))

    def forward(self, ws: Tensor, height: int | None = None, width: int | None = None, bbox=None,
                tile: int | None = None, grid: RenderGrid | None = None) -> Tensor:
        """Render ws on the training grid (``height``, ``width`` and ``bbox`` may only name it)."""
        self.check_ws(ws)
        self.check_grid(make_grid(self.cfg, height, width, bbox) if grid is None else grid, tile)
        x = self.const.to(ws.dtype).expand(ws.shape[0], -1, -1, -1)  # [B, C4, 4, 4]
        img = None
        for block, w0 in zip(self.blocks, self.block_w_idx, strict=True):
            x, img = block(x, img, ws[:, w0 : w0 + block.num_conv + 1])
        return img

    def extra_repr(self) -> str:
        return f"resolution={self.cfg.resolution}, num_ws={self.num_ws}"
