"""Typed configuration: generator, discriminator and training settings, and the named presets.

Every config is a frozen dataclass that round-trips through plain JSON (``to_dict`` / ``from_dict``);
unknown keys are an error, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot be built: an unknown key, preset or value."""


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        if name == "levels":
            value = tuple(_from_dict(LevelConfig, v) for v in value)
        elif name == "level" and value is not None:
            value = _from_dict(LevelConfig, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _is_pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


@dataclass(frozen=True)
class LevelConfig:
    """Coordinate embeddings that enter the INR at one grid level of the multi-scale pyramid.

    The features are [sin(E), cos(E), const] where E stacks the projections of (x, y) onto the bases
    in this order: logarithmic, Gaussian, learned, predicted-from-w.
    """

    log_basis: bool = True  # fixed logarithmic Fourier basis: x and y, (pi/2) * 2^k, k < log2(res)
    log_diagonals: bool = True  # also both diagonals (period 4 * sqrt(2))
    gaussian: int = 0  # fixed random Gaussian basis vectors (std `gaussian_std`)
    gaussian_std: float = math.sqrt(10.0)
    learned: int = 0  # learned Fourier basis vectors, shared by all samples
    predicted: int = 0  # per-sample basis vectors (and phases) predicted from w
    const: int = 0  # learned per-pixel constant embedding channels

    def num_basis(self, res: int) -> int:
        n = 0
        if self.log_basis:
            n += (4 if self.log_diagonals else 2) * int(math.ceil(math.log2(res)))
        return n + self.gaussian + self.learned + self.predicted

    def num_channels(self, res: int) -> int:
        return 2 * self.num_basis(res) + self.const


@dataclass(frozen=True)
class GeneratorConfig:
    """The INR-GAN generator: a mapping network and a multi-scale FMM-modulated per-pixel MLP."""

    resolution: int = 32  # training resolution R (output grid R x R at the default box)
    img_channels: int = 3
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 32768  # block channels = min(channel_base // block_res, channel_max)
    channel_max: int = 512
    first_grid: int = 32  # blocks up to this resolution run on this grid (the first pyramid level)
    extra_layers: tuple[int, ...] = ()  # block resolutions that get one extra FMM layer
    fmm_rank: int = 10
    fmm_modulation: str = "linear"  # W_s * (1 + M) (release); "sigmoid": W_s * 2 sigmoid(M); "tanh"
    fmm_demodulate: bool = True  # L2-normalise every output row of the modulated weight
    predict_bias: bool = False  # older variants: biases predicted from w instead of shared
    upsampling: str = "nearest"  # "nearest" keeps pixels independent; "bilinear" is the -bil variant
    instance_norm: bool = False  # -bil: divide features by their spatial std before conv1 and extras
    levels: tuple[LevelConfig, ...] = ()  # one per grid level: first_grid, 2*first_grid, ..., resolution
    grid: str = "center"  # "center": pixel-centred, y down; "release": the reference code's grid
    const_padding: str = "border"  # learned constants outside the training box: "border" or "reflection"
    superres: str = "dense"  # render above R: "dense" (all levels denser) or "upsample" (last level)
    final_tanh: bool = False
    class_names: tuple[str, ...] = ()  # a class-conditional model: one class per name (c_dim of them)
    family: str = "inr-gan"  # the generator family (see FAMILY_CONFIGS); configs written before it are INR-GAN's

    def __post_init__(self) -> None:
        if self.family != "inr-gan":
            raise ConfigError(f"GeneratorConfig is the inr-gan family's config, got family {self.family!r}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"class_names must be distinct, got {self.class_names}")
        if not _is_pow2(self.resolution) or self.resolution < 4:
            raise ConfigError(f"resolution must be a power of two >= 4, got {self.resolution}")
        if not _is_pow2(self.first_grid) or not 4 <= self.first_grid <= self.resolution:
            raise ConfigError(f"first_grid must be a power of two in [4, resolution], got {self.first_grid}")
        if self.img_channels not in (1, 3):
            raise ConfigError(f"img_channels must be 1 or 3, got {self.img_channels}")
        if len(self.levels) != len(self.grid_resolutions):
            raise ConfigError(
                f"levels: expected {len(self.grid_resolutions)} entries (grids {self.grid_resolutions}), "
                f"got {len(self.levels)}"
            )
        for name, value, allowed in (
            ("fmm_modulation", self.fmm_modulation, ("linear", "sigmoid", "tanh")),
            ("upsampling", self.upsampling, ("nearest", "bilinear")),
            ("grid", self.grid, ("center", "release")),
            ("const_padding", self.const_padding, ("border", "reflection")),
            ("superres", self.superres, ("dense", "upsample")),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
        bad = [r for r in self.extra_layers if r not in self.block_resolutions]
        if bad:
            raise ConfigError(f"extra_layers {bad} are not block resolutions {self.block_resolutions}")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    @property
    def c_dim(self) -> int:
        """The number of classes of a conditional model (0: unconditional)."""
        return len(self.class_names)

    @property
    def grid_resolutions(self) -> list[int]:
        return [2**i for i in range(int(math.log2(self.first_grid)), int(math.log2(self.resolution)) + 1)]

    @property
    def pixel_independent(self) -> bool:
        """Whether each output pixel depends on its own coordinates only (nearest upsampling, no spatial std
        normalisation), so that any window of pixels can be rendered, in tiles or chunks, on its own."""
        return self.upsampling == "nearest" and not self.instance_norm

    def channels(self, block_res: int) -> int:
        return min(self.channel_base // block_res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class _FamilyConfig:
    """What every generator family other than INR-GAN shares with it: the mapping network, the output and
    the coordinate frame ("center": box (-1, -1) to (1, 1), y down)."""

    resolution: int = 32
    img_channels: int = 3
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    class_names: tuple[str, ...] = ()
    grid: str = "center"

    families = ()  # the family names this config class takes

    def __post_init__(self) -> None:
        if self.family not in self.families:
            raise ConfigError(f"{type(self).__name__}: family must be one of {self.families}, got {self.family!r}")
        if not _is_pow2(self.resolution) or self.resolution < 4:
            raise ConfigError(f"resolution must be a power of two >= 4, got {self.resolution}")
        if self.img_channels not in (1, 3):
            raise ConfigError(f"img_channels must be 1 or 3, got {self.img_channels}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"class_names must be distinct, got {self.class_names}")
        if self.grid != "center":
            raise ConfigError(f"grid must be 'center' for the {self.family} family, got {self.grid!r}")

    @property
    def c_dim(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return _from_dict(cls, data)


@dataclass(frozen=True)
class StyleGAN2Config(_FamilyConfig):
    """StyleGAN2's generator (Karras et al. 2020): a learned constant 4x4 input, per block 3x3 modulated and
    demodulated convolutions with noise inputs, 2x upsampling by a low-pass FIR filter, and skip ToRGBs.
    It renders its training grid only."""

    family: str = "stylegan2"
    channel_base: int = 5120  # block channels = min(channel_base // block_res, channel_max)
    channel_max: int = 160
    fir_taps: tuple[int, ...] = (1, 3, 3, 1)  # the low-pass filter of the upsampling (outer product with itself)

    families = ("stylegan2",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channel_base < 1 or self.channel_max < 1:
            raise ConfigError("channel_base and channel_max must be positive")
        if len(self.fir_taps) < 2 or len(self.fir_taps) % 2 or min(self.fir_taps) <= 0:
            raise ConfigError(f"fir_taps must be an even number (>= 2) of positive taps, got {self.fir_taps}")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    @property
    def pixel_independent(self) -> bool:
        return False  # 3x3 convolutions mix neighbouring pixels

    def channels(self, block_res: int) -> int:
        return min(self.channel_base // block_res, self.channel_max)


@dataclass(frozen=True)
class PixelINRConfig(_FamilyConfig):
    """A single-scale per-pixel MLP (an INR) evaluated at every output pixel, whose per-sample parameters come
    from w in one of three ways (the family):

    - "latent-inr": shared weights, w concatenated to the coordinate input (the ablation's first rung);
    - "hyper-inr": every layer's weight and bias generated from w by a linear hypernetwork head;
    - "cips": StyleGAN2's modulation and demodulation of 1x1 layers (CIPS, Anokhin et al. 2021).

    ``channels`` are the hidden layers' widths; a ToRGB follows every layer of ``torgb_layers`` (0-based)
    and their outputs are summed (skip architecture).
    """

    family: str = "cips"
    coords: str = "embedding"  # "raw": the (x, y) coordinates themselves; "embedding": the features of `level`
    level: LevelConfig | None = None  # the coordinate embedding of coords="embedding" (at the training grid)
    channels: tuple[int, ...] = (128,) * 8
    torgb_layers: tuple[int, ...] = (1, 3, 5, 7)
    const_padding: str = "border"

    families = ("latent-inr", "hyper-inr", "cips")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.coords not in ("raw", "embedding"):
            raise ConfigError(f"coords must be 'raw' or 'embedding', got {self.coords!r}")
        if (self.coords == "embedding") != (self.level is not None):
            raise ConfigError("coords='embedding' needs a level (LevelConfig); coords='raw' takes none")
        if self.level is not None and self.level.predicted:
            raise ConfigError("a predicted Fourier basis is INR-GAN's option, not this family's")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"channels must be positive widths, got {self.channels}")
        n = len(self.channels)
        if not self.torgb_layers or list(self.torgb_layers) != sorted(set(self.torgb_layers)) \
                or not 0 <= self.torgb_layers[0] or self.torgb_layers[-1] != n - 1:
            raise ConfigError(f"torgb_layers must be increasing layer indices ending with the last, {n - 1}; got "
                              f"{self.torgb_layers}")
        if self.const_padding not in ("border", "reflection"):
            raise ConfigError(f"const_padding must be 'border' or 'reflection', got {self.const_padding!r}")

    @property
    def pixel_independent(self) -> bool:
        return True

    @property
    def coord_channels(self) -> int:
        return 2 if self.level is None else self.level.num_channels(self.resolution)


AnyGeneratorConfig = GeneratorConfig | StyleGAN2Config | PixelINRConfig
FAMILY_CONFIGS: dict[str, type] = {"inr-gan": GeneratorConfig, "stylegan2": StyleGAN2Config,
                                   **{f: PixelINRConfig for f in PixelINRConfig.families}}


def generator_config_from_dict(data: dict[str, Any]) -> AnyGeneratorConfig:
    """The config of any generator family from plain data; one without a family (written before families
    existed) is INR-GAN's."""
    if not isinstance(data, dict):
        raise ConfigError(f"generator config: expected a JSON object, got {type(data).__name__}")
    family = data.get("family", "inr-gan")
    if family not in FAMILY_CONFIGS:
        raise ConfigError(f"unknown generator family {family!r}; known families are {sorted(FAMILY_CONFIGS)}")
    return FAMILY_CONFIGS[family].from_dict(data)


def _check_d_images(resolution: int, img_channels: int) -> None:
    """The images either discriminator takes: a power-of-two side >= 16, gray or RGB."""
    if not _is_pow2(resolution) or resolution < 16:
        raise ConfigError(f"discriminator resolution must be a power of two >= 16, got {resolution}")
    if img_channels not in (1, 3):
        raise ConfigError(f"img_channels must be 1 or 3, got {img_channels}")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """StyleGAN2 residual discriminator."""

    resolution: int = 32
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    num_fp16_res: int = 4  # highest-resolution blocks run in fp16 under CUDA mixed precision
    conv_clamp: float | None = 256.0  # clamp of conv outputs in fp16 blocks
    c_dim: int = 0  # classes of a conditional D (projection discriminator); 0: unconditional
    architecture: str = "resnet"  # see ProjectedDiscriminatorConfig for "projected"

    def __post_init__(self) -> None:
        _check_d_images(self.resolution, self.img_channels)
        if self.architecture != "resnet":
            raise ConfigError(f"DiscriminatorConfig is the resnet D's config, got architecture {self.architecture!r}")

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ProjectedDiscriminatorConfig:
    """Projected GAN's discriminator (Sauer et al., NeurIPS 2021): images seen through a frozen pretrained
    network, EfficientNet-Lite1 (ImageNet), at four depths; each depth's features mixed across channels (CCM)
    and across scales (CSM) by fixed random projections; a small trainable head per scale."""

    architecture: str = "projected"
    resolution: int = 32
    img_channels: int = 3
    backbone: str = "lite1"  # EfficientNet variant (inrgan.nets.efficientnet_lite.VARIANTS)
    backbone_resolution: int = 64  # images are resized (bilinear) to this square before the backbone
    ccm_channels: tuple[int, ...] = (64, 128, 256, 512)  # per scale, after the random 1x1 projections
    head_channels: int = 128  # width of the heads' stride-2 convolutions
    head_norm: str = "none"  # "batch": BatchNorm after each stride-2 convolution of the heads, as in the paper
    head_mbstd: int = 0  # minibatch-std group size before each head's last convolution; 0: none
    projection_seed: int = 0  # seed of the fixed random projections (CCM and CSM)
    c_dim: int = 0  # classes of a conditional D (projection per head); 0: unconditional

    def __post_init__(self) -> None:
        if self.architecture != "projected":
            raise ConfigError(f"ProjectedDiscriminatorConfig: architecture must be 'projected', got "
                              f"{self.architecture!r}")
        _check_d_images(self.resolution, self.img_channels)
        if self.backbone not in ("lite0", "lite1"):
            raise ConfigError(f"backbone must be 'lite0' or 'lite1', got {self.backbone!r}")
        if self.backbone_resolution < 32 or self.backbone_resolution % 32:
            raise ConfigError(f"backbone_resolution must be a multiple of 32 (the backbone's stride), got "
                              f"{self.backbone_resolution}")
        if self.head_norm not in ("none", "batch"):
            raise ConfigError(f"head_norm must be 'none' or 'batch', got {self.head_norm!r}")
        if self.head_mbstd < 0:
            raise ConfigError(f"head_mbstd must be a group size >= 0, got {self.head_mbstd}")
        if len(self.ccm_channels) != 4 or min(self.ccm_channels) < 1 or self.head_channels < 1:
            raise ConfigError(f"ccm_channels must be 4 positive widths (one per scale), got {self.ccm_channels}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectedDiscriminatorConfig:
        return _from_dict(cls, data)


AnyDiscriminatorConfig = DiscriminatorConfig | ProjectedDiscriminatorConfig
D_ARCHITECTURES: dict[str, type] = {"resnet": DiscriminatorConfig, "projected": ProjectedDiscriminatorConfig}


def discriminator_config_from_dict(data: dict[str, Any]) -> AnyDiscriminatorConfig:
    """The config of either discriminator from plain data; one without an architecture (written before the
    projected D existed) is the resnet D's."""
    if not isinstance(data, dict):
        raise ConfigError(f"discriminator config: expected a JSON object, got {type(data).__name__}")
    arch = data.get("architecture", "resnet")
    if arch not in D_ARCHITECTURES:
        raise ConfigError(f"unknown discriminator architecture {arch!r}; known: {sorted(D_ARCHITECTURES)}")
    return D_ARCHITECTURES[arch].from_dict(data)


@dataclass(frozen=True)
class TrainingConfig:
    """The training recipe: losses, optimisers, EMA, logging and snapshot cadence."""

    batch: int = 32
    kimg: float = 25000.0
    lr: float = 0.0025  # base learning rate, before the lazy-regularisation correction
    d_lr: float | None = None  # D's, where it differs from G's
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 10.0
    r1_interval: int = 16  # lazy R1: every this many D steps, weighted by the interval
    g_reg_interval: int = 4  # the release corrects G's lr and beta2 as if G were lazily regularised
    ema_kimg: float = 20.0  # half-life of the G_ema average, in thousands of images
    ema_rampup: float | None = 0.05
    xflip: bool = True
    mixed_precision: bool = True  # bf16/fp16 autocast of D on CUDA; always fp32 on the CPU
    tick_kimg: float = 4.0  # log, sample grid and metrics cadence
    snapshot_ticks: int = 10  # checkpoint every this many ticks (and at the end)
    grid_seeds: int = 16  # samples in the per-tick grid, from fixed seeds 0..n-1
    seed: int = 0
    # The G phase renders G's images in g_tile x g_tile tiles, each recomputed in the backward pass: the
    # graph keeps one tile's activations instead of the whole image's (the same gradients, for a second
    # forward of G). None renders whole images. Pixel-independent models only (nearest upsampling, no -bil).
    g_tile: int | None = None
    # Every phase checkpoints D's blocks: their activations are recomputed in the backward pass instead of
    # kept (the same gradients, R1 included, for a second forward of D's blocks).
    d_checkpoint: bool = False
    # R1 on micro-batches of about this many reals (whole minibatch-std groups), each differentiated twice on
    # its own: the same penalty and gradients, with the R1 step's memory of one micro-batch. None: one batch.
    r1_batch: int | None = None
    # Augmentation of every image D sees (inrgan.training.augment): "none", "ada" (probability p adjusted
    # toward aug_target, or fixed at aug_p) or "diffaugment".
    aug: str = "none"
    aug_target: float = 0.6
    aug_p: float | None = None
    ada_kimg: float = 500.0  # ADA's p can go from 0 to 1 in this many kimg
    freeze_d: int = 0  # D's first (highest-resolution) blocks kept frozen, for fine-tuning (FreezeD)
    # "logistic": StyleGAN2's non-saturating logistic loss; "hinge": the hinge loss of Projected GAN
    loss: str = "logistic"

    def __post_init__(self) -> None:
        if self.loss not in ("logistic", "hinge"):
            raise ConfigError(f"loss must be logistic or hinge, got {self.loss!r}")
        if self.aug not in ("none", "ada", "diffaugment"):
            raise ConfigError(f"aug (--aug) must be none, ada or diffaugment, got {self.aug!r}")
        if self.aug_p is not None and not 0 <= self.aug_p <= 1:
            raise ConfigError(f"aug_p (--aug-p) must lie in [0, 1], got {self.aug_p}")
        if not 0 < self.aug_target < 1 or self.ada_kimg <= 0:
            raise ConfigError("aug_target (--aug-target) must lie in (0, 1) and ada_kimg be positive")
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}")
        if self.lr <= 0 or (self.d_lr is not None and self.d_lr <= 0):
            raise ConfigError(f"lr and d_lr must be positive, got {self.lr} and {self.d_lr}")
        if self.freeze_d < 0:
            raise ConfigError(f"freeze_d (--freeze-d) must be >= 0, got {self.freeze_d}")
        if self.r1_interval < 1 or self.g_reg_interval < 1:
            raise ConfigError("r1_interval and g_reg_interval must be >= 1")
        if self.kimg <= 0:
            raise ConfigError(f"kimg must be positive, got {self.kimg}")
        if self.r1_batch is not None and self.r1_batch < 1:
            raise ConfigError(f"r1_batch (--r1-batch) must be >= 1, got {self.r1_batch}")
        if self.g_tile is not None and self.g_tile < 1:
            raise ConfigError(f"g_tile (--g-tile) must be >= 1, got {self.g_tile}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    G: AnyGeneratorConfig
    D: AnyDiscriminatorConfig
    training: TrainingConfig = field(default_factory=TrainingConfig)


# ----------------------------------------------------------------------------------------------
# Presets.


def _release_levels(grids: list[int]) -> tuple[LevelConfig, ...]:
    # Released coordinate embeddings: log basis with diagonals and 128 constants up to 64^2; from
    # 128^2 on, x/y log basis, 32 Gaussian vectors and 64 constants.
    return tuple(
        LevelConfig(log_diagonals=True, const=128)
        if g <= 64
        else LevelConfig(log_diagonals=False, gaussian=32, const=64)
        for g in grids
    )


def _release_g(resolution: int, img_channels: int, *, extra: bool, bilinear: bool) -> GeneratorConfig:
    first_grid = min(32, resolution)
    grids = [2**i for i in range(int(math.log2(first_grid)), int(math.log2(resolution)) + 1)]
    return GeneratorConfig(
        resolution=resolution,
        img_channels=img_channels,
        z_dim=512,
        w_dim=512,
        channel_base=32768,
        channel_max=512,
        first_grid=first_grid,
        extra_layers=tuple(r for r in (128, 256) if r <= resolution) if extra else (),
        upsampling="bilinear" if bilinear else "nearest",
        instance_norm=bilinear,
        levels=_release_levels(grids),
        grid="release",
    )


def _release(name: str, description: str, *, extra: bool, bilinear: bool):
    def build(resolution: int = 256, img_channels: int = 3) -> Preset:
        return Preset(
            name=name,
            description=description,
            G=_release_g(resolution, img_channels, extra=extra, bilinear=bilinear),
            D=DiscriminatorConfig(resolution=resolution, img_channels=img_channels),
            training=TrainingConfig(batch=64, ema_kimg=20.0, r1_gamma=10.0),
        )

    return build


# The CPU recipes. v1 (cpu-32-v1, cpu-64): D of 64 to 128 channels, lr 0.0025, R1 gamma by StyleGAN2-ADA's
# rule 0.0002 R^2 / batch, batch 16. v2 (cpu-32-v2), chosen by the recipe sweep of docs/training.md ("Quality
# per CPU-hour"): D at half the width (32 to 64 channels, a quarter of its FLOPs: 1.8x the images per
# second), twice the learning rate, and gamma 1.0. v3 (cpu-32, the baselines and the ladder): v2 at batch 8,
# twice the optimizer steps for the images (docs/training.md: the 25-minute runs of both seeds).
V1_D, V2_D = (2048, 128), (1024, 64)  # D's (channel_base, channel_max)
V1_LR, V2_LR = 0.0025, 0.005
V2_GAMMA = 1.0
V3_BATCH = 8  # v3: v2 at half the batch (twice the steps for the images)


def _small_d(resolution: int, img_channels: int, width: tuple[int, int] = V2_D) -> DiscriminatorConfig:
    return DiscriminatorConfig(resolution=resolution, img_channels=img_channels, channel_base=width[0],
                               channel_max=width[1])


def _small_training(resolution: int, version: int = 3) -> TrainingConfig:
    # StyleGAN2-ADA's small-batch rule: EMA half-life batch * 10 / 32 kimg (and v1's gamma scaled to R^2).
    lr, gamma = (V2_LR, V2_GAMMA) if version >= 2 else (V1_LR, 0.0002 * resolution**2 / 16)
    batch = V3_BATCH if version >= 3 else 16
    return TrainingConfig(batch=batch, lr=lr, ema_kimg=batch * 10 / 32, r1_gamma=gamma, tick_kimg=1.0,
                          snapshot_ticks=5)


def _small_g(resolution: int, img_channels: int, first_grid: int) -> GeneratorConfig:
    grids = [2**i for i in range(int(math.log2(first_grid)), int(math.log2(resolution)) + 1)]
    return GeneratorConfig(
        resolution=resolution,
        img_channels=img_channels,
        z_dim=128,
        w_dim=128,
        channel_base=2048,
        channel_max=128,
        first_grid=first_grid,
        fmm_rank=8,
        levels=tuple(LevelConfig(log_diagonals=True, const=16) for _ in grids),
        grid="center",
    )


def _small(name: str, default_res: int, description: str, version: int = 3):
    def build(resolution: int = default_res, img_channels: int = 3) -> Preset:
        g = _small_g(resolution, img_channels, min(8, resolution))
        return Preset(name=name, description=description, G=g,
                      D=_small_d(resolution, img_channels, V2_D if version >= 2 else V1_D),
                      training=_small_training(resolution, version))

    return build


# ----------------------------------------------------------------------------------------------
# The baselines and the ablation ladder: other generators on cpu-32's discriminator and recipe
# (docs/fidelity.md). The ladder's rungs keep cpu-32's INR layout (its layer widths and ToRGBs), each
# adding one idea: 1 [coordinates, w] -> MLP; 2 the MLP's weights generated from w; 3 the coordinate
# embedding of cpu-32's last level; 4 FMM instead of generated weights (INR-GAN at one scale);
# 5 multi-scale, cpu-32 itself.


def _small_layout(resolution: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """cpu-32's INR at one scale: the hidden widths (block 4 has one layer, later blocks two) and the layers a
    ToRGB follows (every block's last), as ``SynthesisNetwork`` lays them out."""
    g = _small_g(resolution, 1, resolution)
    widths = [g.channels(4)] + [g.channels(r) for r in g.block_resolutions[1:] for _ in range(2)]
    return tuple(widths), tuple(range(0, len(widths), 2))


def _family(name: str, default_res: int, description: str, make_g):
    def build(resolution: int = default_res, img_channels: int = 3) -> Preset:
        return Preset(name=name, description=description, G=make_g(resolution, img_channels),
                      D=_small_d(resolution, img_channels), training=_small_training(resolution))

    return build


def _ladder_g(family: str, fourier: bool):
    def make(resolution: int, img_channels: int) -> PixelINRConfig:
        channels, torgbs = _small_layout(resolution)
        level = _small_g(resolution, img_channels, resolution).levels[0] if fourier else None
        return PixelINRConfig(resolution=resolution, img_channels=img_channels, family=family,
                              coords="embedding" if fourier else "raw", level=level, channels=channels,
                              torgb_layers=torgbs)

    return make


def _cips_g(resolution: int, img_channels: int) -> PixelINRConfig:
    # Learned Fourier features (64 frequencies: sin and cos) and a learned 128-channel constant embedding of
    # the training grid, 8 modulated 1x1 layers of 256 channels, a ToRGB after every second layer.
    return PixelINRConfig(resolution=resolution, img_channels=img_channels, family="cips", coords="embedding",
                          level=LevelConfig(log_basis=False, learned=64, const=128), channels=(256,) * 8,
                          torgb_layers=(1, 3, 5, 7))


def _stylegan2_g(resolution: int, img_channels: int) -> StyleGAN2Config:
    # 160 channels at every block: about as many parameters as cpu-32's generator (docs/fidelity.md).
    return StyleGAN2Config(resolution=resolution, img_channels=img_channels)


def _fmm_one_scale_g(resolution: int, img_channels: int) -> GeneratorConfig:
    return _small_g(resolution, img_channels, resolution)


def _projected(resolution: int = 32, img_channels: int = 3) -> Preset:
    # cpu-32's generator against Projected GAN's discriminator: EfficientNet-Lite1 at 64^2, hinge loss,
    # DiffAugment, no R1, lr 0.0025 (docs/training.md, "Quality per CPU-hour": on this G and data it collapses
    # to a few modes within the sweep's budget, whatever its lr, batch, heads or backbone resolution)
    base = _small("cpu-32-v2", 32, "", version=2)(resolution, img_channels)  # batch 16, as the sweep tried it
    return Preset(name="cpu-32-projected", description="cpu-32's G against a projected D (EfficientNet-Lite1 "
                  "features, hinge loss, DiffAugment); experimental: it collapses here (docs/training.md)",
                  G=base.G, D=ProjectedDiscriminatorConfig(resolution=resolution, img_channels=img_channels),
                  training=replace(base.training, lr=V1_LR, loss="hinge", r1_gamma=0.0, aug="diffaugment"))


PRESETS = {
    "cpu-32": _small("cpu-32", 32, "small INR-GAN that trains on a 2-core CPU at 32x32 (default; recipe v3)"),
    "cpu-32-v2": _small("cpu-32-v2", 32, "cpu-32's second recipe: batch 16 instead of 8", version=2),
    "cpu-32-v1": _small("cpu-32-v1", 32, "cpu-32's first recipe: D twice as wide, lr 0.0025, gamma 0.0128",
                        version=1),
    "cpu-64": _small("cpu-64", 64, "small INR-GAN that trains on a CPU at 64x64 (recipe v1)", version=1),
    "cpu-32-projected": _projected,
    "stylegan2": _family("stylegan2", 32, "StyleGAN2 baseline of about cpu-32's size (renders its own grid only)",
                         _stylegan2_g),
    "cips": _family("cips", 32, "CIPS baseline: full-resolution modulated 1x1 layers on Fourier features and "
                    "a learned constant embedding", _cips_g),
    "ladder-1-latent-mlp": _family("ladder-1-latent-mlp", 32, "ablation rung 1: an MLP on [coordinates, w] "
                                   "(latent-conditioned INR)", _ladder_g("latent-inr", fourier=False)),
    "ladder-2-hypernet": _family("ladder-2-hypernet", 32, "ablation rung 2: + hypernetwork (the INR's weights "
                                 "generated from w)", _ladder_g("hyper-inr", fourier=False)),
    "ladder-3-fourier": _family("ladder-3-fourier", 32, "ablation rung 3: + Fourier coordinate embeddings",
                                _ladder_g("hyper-inr", fourier=True)),
    "ladder-4-fmm": _family("ladder-4-fmm", 32, "ablation rung 4: + FMM (INR-GAN at one scale; rung 5, "
                            "+ multi-scale, is cpu-32)", _fmm_one_scale_g),
    "inr-gan": _release(
        "inr-gan", "the released 256x256 architecture (bedroom/FFHQ, extra layers)", extra=True, bilinear=False
    ),
    "inr-gan-noextra": _release(
        "inr-gan-noextra", "the released churches architecture (no extra layers)", extra=False, bilinear=False
    ),
    "inr-gan-bil": _release(
        "inr-gan-bil", "the released -bil variant (bilinear upsampling, spatial std norm)", extra=True, bilinear=True
    ),
}
DEFAULT_PRESET = "cpu-32"


def get_preset(name: str = DEFAULT_PRESET, resolution: int | None = None, img_channels: int = 3) -> Preset:
    """Build a named preset, optionally at another resolution or channel count."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    kwargs: dict[str, Any] = {"img_channels": img_channels}
    if resolution is not None:
        kwargs["resolution"] = resolution
    return PRESETS[name](**kwargs)
