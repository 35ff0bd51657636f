"""Map a reference INR-GAN generator onto ours: detect its variant, plan every tensor, build, export.

The released generators differ in two ways that matter here: extra FMM layers at 128^2 and 256^2 (in the
bedroom and FFHQ models, not in churches) and the "-bil" variant (bilinear upsampling and division by
the spatial std). Extra layers show in the tensors; bilinear upsampling does not, so it is read from the
configuration the reference stored as plain data beside its modules (``_init_kwargs['cfg']``).

Every reference tensor is either moved onto exactly one of our tensors (same values, at most a dropped
1x1 kernel or batch axis) or skipped for a stated reason; anything else is an error, as is any of our
tensors left unfilled.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..accel import Generator
from ..config import ConfigError, GeneratorConfig, LevelConfig, get_preset
from ..io import sha256_file
from ..models.synthesis import extra_layer_name
from .unpickle import ModuleRecord, OfficialPickleError, load_reference_pickle

RELEASE_PRESETS = ("inr-gan", "inr-gan-noextra", "inr-gan-bil")
SKIP_RESAMPLE_FILTER = (
    "FIR resampling filter of the StyleGAN2 convolutions; FMM layers are 1x1 and never resample"
)
SKIP_CACHE = "a cache held as a plain attribute (coordinate features), not a parameter or buffer"


# ----------------------------------------------------------------------------------------------
# Variant detection.


@dataclass(frozen=True)
class ReferenceVariant:
    """A reference generator described in our configuration's terms."""

    config: GeneratorConfig
    preset: str | None  # the named preset that ``config`` equals, if any
    notes: tuple[str, ...] = ()

    @property
    def bilinear(self) -> bool:
        return self.config.upsampling == "bilinear"

    def describe(self) -> str:
        cfg = self.config
        extra = (
            f"extra layers at {', '.join(map(str, cfg.extra_layers))}"
            if cfg.extra_layers
            else "no extra layers"
        )
        norm = ", spatial-std normalisation" if cfg.instance_norm else ""
        name = self.preset or "a custom release-style architecture"
        return f"{name} ({cfg.resolution}x{cfg.resolution}, {cfg.upsampling} upsampling{norm}, {extra})"

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "preset": self.preset,
            "resolution": cfg.resolution,
            "extra_layers": list(cfg.extra_layers),
            "upsampling": cfg.upsampling,
            "instance_norm": cfg.instance_norm,
            "notes": list(self.notes),
        }


def _require(parent: ModuleRecord, name: str, class_name: str | None = None) -> ModuleRecord:
    child = parent.child(name)
    if child is None:
        raise OfficialPickleError(
            f"{parent.class_name} has no submodule {name!r}; not a reference INR-GAN generator"
        )
    if class_name is not None and child.class_name != class_name:
        raise OfficialPickleError(
            f"{parent.class_name}.{name} is a {child.class_name}, expected {class_name}"
        )
    return child


def _tensor(record: ModuleRecord, name: str, where: str) -> Tensor:
    t = {**record.parameters, **record.buffers}.get(name)
    if t is None:
        raise OfficialPickleError(f"{where} has no tensor {name!r}")
    return t


def reference_config(G: ModuleRecord) -> dict[str, Any]:
    """The generator's configuration dict as the reference stored it (``_init_kwargs['cfg']``), or {}."""
    kwargs = G.get("_init_kwargs")
    cfg = kwargs.get("cfg") if isinstance(kwargs, dict) else None
    return cfg if isinstance(cfg, dict) else {}


def _cfg_get(cfg: Mapping[str, Any], path: str, default: Any = None) -> Any:
    node: Any = cfg
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def _block_records(synthesis: ModuleRecord) -> dict[int, ModuleRecord]:
    blocks = {
        int(m.group(1)): rec
        for name, rec in synthesis.children.items()
        if (m := re.fullmatch(r"b(\d+)", name))
    }
    if not blocks:
        raise OfficialPickleError("the synthesis network has no blocks b4, b8, ...")
    res = sorted(blocks)
    expected = [2**i for i in range(2, int(math.log2(res[-1])) + 1)]
    if res != expected:
        raise OfficialPickleError(f"synthesis blocks {res} are not the power-of-two ladder {expected}")
    return blocks


def _level_config(fuser: ModuleRecord, grid: int, where: str) -> LevelConfig:
    tensors = {**fuser.parameters, **fuser.buffers}
    unknown = sorted(set(tensors) - {"log_basis", "random_basis", "const_embs"})
    if unknown:
        raise OfficialPickleError(
            f"{where}: coordinate embeddings {unknown} (learned or predicted bases) are not "
            f"part of the released architecture"
        )
    if fuser.get("use_cosine", True) is not True or fuser.get("use_raw_coords", False) is not False:
        raise OfficialPickleError(f"{where}: embeddings must be [sin, cos, const] without raw coordinates")
    n_log = tensors["log_basis"].shape[0] if "log_basis" in tensors else 0
    k = int(math.ceil(math.log2(grid)))
    if n_log not in (0, 2 * k, 4 * k):
        raise OfficialPickleError(
            f"{where}: a logarithmic basis of {n_log} vectors does not fit a {grid}^2 grid"
        )
    const = tensors.get("const_embs")
    if const is not None and tuple(const.shape[2:]) != (grid, grid):
        raise OfficialPickleError(
            f"{where}: constant embeddings of shape {tuple(const.shape)} on a {grid}^2 grid"
        )
    return LevelConfig(
        log_basis=n_log > 0,
        log_diagonals=n_log == 4 * k or n_log == 0,
        gaussian=tensors["random_basis"].shape[0] if "random_basis" in tensors else 0,
        const=const.shape[1] if const is not None else 0,
    )


def _channel_rule(channels: dict[int, int]) -> tuple[int, int]:
    """channel_base and channel_max such that min(base // res, max) gives ``channels`` for every block."""
    channel_max = max(channels.values())
    below = [res * c for res, c in channels.items() if c < channel_max]
    channel_base = min(below) if below else channel_max * max(channels)
    if any(min(channel_base // r, channel_max) != c for r, c in channels.items()):
        raise OfficialPickleError(f"block channels {channels} do not follow min(base // res, max)")
    return channel_base, channel_max


@dataclass
class _SynthesisFacts:
    """What the synthesis tensors and attributes say about the architecture."""

    first_grid: int
    levels: list[LevelConfig]
    channels: dict[int, int] = field(default_factory=dict)  # block resolution -> output channels
    extra_layers: list[int] = field(default_factory=list)
    rank: int | None = None
    norms: set[bool] = field(default_factory=set)  # instance_norm of conv1 (after the first block) and extras
    other_norms: set[bool] = field(default_factory=set)  # instance_norm of conv0 and the first conv1
    notes: list[str] = field(default_factory=list)


def _fmm_rank(layer: ModuleRecord, where: str) -> int:
    c_out, c_in = _tensor(layer, "weight", where).shape[:2]
    styles = _tensor(_require(layer, "affine"), "weight", f"{where}.affine").shape[0]
    if styles % (c_in + c_out):
        raise OfficialPickleError(f"{where}: affine output {styles} is not (c_in + c_out) * rank; not FMM")
    return styles // (c_in + c_out)


def _read_synthesis(blocks: dict[int, ModuleRecord]) -> _SynthesisFacts:
    """Coordinate levels, channels, extra layers, FMM rank and normalisation flags of the blocks."""
    first_fuser = _require(
        _require(_require(blocks[4], "input", "GenInput"), "input", "CoordsInput"),
        "coord_fuser",
        "CoordFuser",
    )
    first_grid = first_fuser.get("resolution")
    if not isinstance(first_grid, int):
        first_grid = _tensor(first_fuser, "const_embs", "synthesis.b4.input").shape[-1]
    facts = _SynthesisFacts(first_grid, [_level_config(first_fuser, first_grid, "synthesis.b4.input")])
    for res, block in sorted(blocks.items()):
        where = f"synthesis.b{res}"
        fuser = block.child("coord_fuser")
        if (fuser is not None) != (res > first_grid):
            raise OfficialPickleError(
                f"{where}: coordinate embeddings must enter exactly where the grid doubles"
            )
        if fuser is not None:
            facts.levels.append(_level_config(fuser, res, where))
        layers = {"conv1": _require(block, "conv1", "SynthesisLayer")}
        if res > 4:
            layers["conv0"] = _require(block, "conv0", "SynthesisLayer")
        extras = block.child("extra_convs")
        if extras is not None:
            if len(extras.children) != 1:
                raise OfficialPickleError(f"{where}: {len(extras.children)} extra layers; the release has 1")
            facts.extra_layers.append(res)
            layers["extra_convs.0"] = extras.children["0"]
        _require(block, "torgb", "ToRGBLayer")
        for name, layer in layers.items():
            rank = _fmm_rank(layer, f"{where}.{name}")
            if facts.rank not in (None, rank):
                raise OfficialPickleError(f"{where}.{name}: FMM rank {rank} differs from {facts.rank}")
            facts.rank = rank
            norm = layer.get("instance_norm")
            if isinstance(norm, bool):
                (facts.other_norms if name == "conv0" or res == 4 else facts.norms).add(norm)
            if layer.get("conv_clamp") is not None and "clamp" not in " ".join(facts.notes):
                facts.notes.append(
                    "the reference clamped activations (conv_clamp); they are not clamped here"
                )
        facts.channels[res] = _tensor(layers["conv1"], "weight", f"{where}.conv1").shape[0]
        if block.get("use_fp16") is True:
            facts.notes.append(f"b{res} ran in float16 in the reference; it is computed in float32 here")
    return facts


def _mapping_layers(G: ModuleRecord) -> tuple[ModuleRecord, list[int]]:
    """The reference mapping network's record and the indices of its fc layers (fc0, fc1, ... only)."""
    mapping = _require(G, "mapping", "MappingNetwork")
    fcs = sorted(int(n[2:]) for n in mapping.children if re.fullmatch(r"fc\d+", n))
    if not fcs or fcs != list(range(len(fcs))) or len(fcs) != len(mapping.children):
        raise OfficialPickleError(
            f"mapping submodules {sorted(mapping.children)}: expected fc0, fc1, ... only"
        )
    return mapping, fcs


def detect_variant(G: ModuleRecord, upsampling: str | None = None) -> ReferenceVariant:
    """Read a reference generator record and describe it as one of our configurations.

    Args:
        G: the ``Generator`` record (usually ``G_ema``) from :func:`load_reference_pickle`.
        upsampling: "nearest" or "bilinear" to override what the stored configuration says.
    """
    if G.class_name != "Generator":
        raise OfficialPickleError(f"expected the reference Generator, got a {G.class_name}")
    if G.get("c_dim", 0):
        raise OfficialPickleError("class-conditional generators (c_dim > 0) are not supported")
    cfg = reference_config(G)
    mapping, fcs = _mapping_layers(G)
    lr_mult, beta = mapping.children["fc0"].get("bias_gain"), mapping.get("w_avg_beta")
    blocks = _block_records(_require(G, "synthesis", "SynthesisNetwork"))
    resolution = max(blocks)
    facts = _read_synthesis(blocks)

    # What the tensors cannot show: the upsampling mode, and the normalisation when not stored per layer.
    if facts.other_norms - {False} or len(facts.norms) > 1:
        raise OfficialPickleError("spatial-std normalisation on unexpected layers; not a released variant")
    instance_norm = facts.norms.pop() if facts.norms else bool(_cfg_get(cfg, "fmm.instance_norm", False))
    mode = upsampling or _cfg_get(cfg, "upsampling_mode")
    if mode not in ("nearest", "bilinear"):
        raise OfficialPickleError(
            f"cannot tell the upsampling mode (stored: {mode!r}); pass upsampling='nearest' or 'bilinear'"
        )
    if _cfg_get(cfg, "use_noise", False) or _cfg_get(cfg, "fmm.activation", "demod") != "demod":
        raise OfficialPickleError("only the released FMM (demodulated, no noise inputs) is supported")

    name = "inr-gan-bil" if mode == "bilinear" else "inr-gan" if facts.extra_layers else "inr-gan-noextra"
    img_channels = _tensor(_require(blocks[resolution], "torgb"), "weight", "torgb").shape[0]
    channel_base, channel_max = _channel_rule(facts.channels)
    try:
        preset = get_preset(name, resolution=resolution, img_channels=img_channels).G
        config = dataclasses.replace(
            preset,
            z_dim=_tensor(mapping.children["fc0"], "weight", "mapping.fc0").shape[1],
            w_dim=_tensor(mapping.children[f"fc{fcs[-1]}"], "weight", "mapping").shape[0],
            mapping_layers=len(fcs),
            mapping_lr_multiplier=float(lr_mult)
            if type(lr_mult) in (int, float)
            else preset.mapping_lr_multiplier,
            w_avg_beta=float(beta) if type(beta) in (int, float) else preset.w_avg_beta,
            channel_base=channel_base,
            channel_max=channel_max,
            first_grid=facts.first_grid,
            extra_layers=tuple(facts.extra_layers),
            fmm_rank=facts.rank,
            upsampling=mode,
            instance_norm=instance_norm,
            levels=tuple(facts.levels),
        )
    except ConfigError as e:
        raise OfficialPickleError(f"the reference generator does not fit our configuration: {e}") from e
    return ReferenceVariant(config, name if config == preset else None, tuple(facts.notes))


# ----------------------------------------------------------------------------------------------
# Weight map.


@dataclass(frozen=True)
class TensorMove:
    """One reference tensor copied onto one of ours, after dropping a 1x1 kernel or a batch axis."""

    source: str
    target: str
    transform: str = "copy"  # "copy" | "squeeze_kernel" ([o, i, 1, 1] -> [o, i]) | "squeeze_batch" ([1, ...])

    def source_shape(self, target_shape: Sequence[int]) -> tuple[int, ...]:
        t = tuple(target_shape)
        return {"copy": t, "squeeze_kernel": (*t, 1, 1), "squeeze_batch": (1, *t)}[self.transform]


@dataclass
class WeightMap:
    """Where every reference tensor goes, and why the rest are skipped."""

    moves: list[TensorMove] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # reference name -> reason
    empty: list[str] = field(default_factory=list)  # our zero-size tensors, which need no source

    def summary(self) -> str:
        return f"{len(self.moves)} tensors mapped, {len(self.skipped)} skipped, none left over, none missing"


_LAYER = r"(conv0|conv1|torgb|extra_convs\.(\d+))"
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"mapping\.(fc\d+\.(?:weight|bias)|w_avg)"), "mapping"),
    (re.compile(rf"synthesis\.b(\d+)\.(?:{_LAYER}\.)?resample_filter"), "skip"),
    (re.compile(rf"synthesis\.b(\d+)\.{_LAYER}\.(affine\.weight|affine\.bias|weight|bias)"), "layer"),
    (
        re.compile(r"synthesis\.b(\d+)\.(input\.input\.)?coord_fuser\.(log_basis|random_basis|const_embs)"),
        "embedding",
    ),
]
_EMBEDDING_NAMES = {
    "log_basis": ("log_basis", "copy"),
    "random_basis": ("gaussian_basis", "copy"),
    "const_embs": ("const", "squeeze_batch"),
}


def _route(name: str, first_grid: int) -> TensorMove | str | None:
    """The move for one reference tensor name, a skip reason, or None when no rule knows it."""
    for pattern, kind in _RULES:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        if kind == "mapping":
            return TensorMove(name, f"mapping.{m.group(1)}")
        if kind == "skip":
            return SKIP_RESAMPLE_FILTER
        block = int(math.log2(int(m.group(1)))) - 2
        if kind == "layer":
            layer, extra, tensor = m.group(2), m.group(3), m.group(4)
            ours = extra_layer_name(int(extra)) if extra is not None else layer
            square = tensor == "weight"
            return TensorMove(
                name, f"synthesis.blocks.{block}.{ours}.{tensor}", "squeeze_kernel" if square else "copy"
            )
        res, is_input, tensor = int(m.group(1)), m.group(2) is not None, m.group(3)
        if is_input != (res == 4):
            return None
        level = 0 if res == 4 else int(math.log2(res)) - int(math.log2(first_grid))
        target, transform = _EMBEDDING_NAMES[tensor]
        return TensorMove(name, f"synthesis.embeddings.{level}.{target}", transform)
    return None


def plan_weight_map(
    reference: Mapping[str, Sequence[int]], ours: Mapping[str, Sequence[int]], first_grid: int
) -> WeightMap:
    """Plan how every reference tensor fills ours; raise listing anything left over, missing or misshapen.

    Args:
        reference: reference tensor name -> shape (``state_dict`` names of the reference generator).
        ours: our generator's tensor name -> shape (parameters and buffers, each once).
        first_grid: the first coordinate grid (32 in the release).
    """
    plan = WeightMap()
    unknown, bad_shape, seen = [], [], {}
    for name, shape in reference.items():
        route = _route(name, first_grid)
        if route is None:
            unknown.append(name)
        elif isinstance(route, str):
            plan.skipped[name] = route
        elif route.target not in ours:
            unknown.append(name)
        elif tuple(shape) != route.source_shape(ours[route.target]):
            bad_shape.append(f"{name} {tuple(shape)} -> {route.target} {tuple(ours[route.target])}")
        elif route.target in seen:
            bad_shape.append(f"{name} and {seen[route.target]} both map to {route.target}")
        else:
            seen[route.target] = name
            plan.moves.append(route)
    missing = []
    for name, shape in ours.items():
        if name not in seen:
            (plan.empty if math.prod(shape) == 0 else missing).append(name)
    problems = []
    if unknown:
        problems.append(f"reference tensors with no place in our model: {unknown}")
    if bad_shape:
        problems.append(f"shape mismatches: {bad_shape}")
    if missing:
        problems.append(f"our tensors with no reference source: {missing}")
    if problems:
        raise OfficialPickleError("the weight map is incomplete; " + "; ".join(problems))
    return plan


def _our_shapes(G: Generator) -> dict[str, tuple[int, ...]]:
    return {n: tuple(t.shape) for n, t in (*G.named_parameters(), *G.named_buffers())}


def convert_generator(
    G_ref: ModuleRecord, upsampling: str | None = None
) -> tuple[Generator, ReferenceVariant, WeightMap]:
    """Build our generator holding the reference generator's exact weights (float32, eval mode)."""
    variant = detect_variant(G_ref, upsampling)
    reference = dict(G_ref.named_tensors())
    G = Generator(variant.config)
    plan = plan_weight_map(
        {n: t.shape for n, t in reference.items()}, _our_shapes(G), variant.config.first_grid
    )
    plan.skipped.update(dict.fromkeys(G_ref.named_attribute_tensors(), SKIP_CACHE))
    targets = dict((*G.named_parameters(), *G.named_buffers()))
    with torch.no_grad():
        for move in plan.moves:
            target = targets[move.target]
            target.copy_(reference[move.source].reshape(target.shape).to(target.dtype))
    return G.eval().requires_grad_(False), variant, plan


# ----------------------------------------------------------------------------------------------
# The whole import.


@dataclass
class ImportResult:
    """Our generator, what the reference was, where each tensor went, and the metadata written."""

    generator: Generator
    variant: ReferenceVariant
    weight_map: WeightMap
    metadata: dict[str, Any]
    out_dir: Path | None = None


def select_network(data: Any, network: str = "G_ema", source: str = "pickle") -> ModuleRecord:
    """The named generator record of an unpickled reference file; a clear error if there is none."""
    if isinstance(data, ModuleRecord) and data.class_name == "Generator":
        return data
    if not isinstance(data, dict):
        raise OfficialPickleError(
            f"{source}: not a reference network pickle: it holds a {type(data).__name__}, "
            f"not a dict with 'G', 'D', 'G_ema'"
        )
    record = data.get(network)
    if record is None:
        keys = sorted(str(k) for k in data)
        raise OfficialPickleError(
            f"{source}: not a reference network pickle: no {network!r} entry (keys: {keys})"
        )
    if not isinstance(record, ModuleRecord) or record.class_name != "Generator":
        what = record.class_name if isinstance(record, ModuleRecord) else type(record).__name__
        raise OfficialPickleError(f"{source}: {network!r} is a {what}, not the reference Generator")
    return record


def import_official(
    path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    network: str = "G_ema",
    upsampling: str | None = None,
) -> ImportResult:
    """Read a reference network pickle safely, convert its generator, and optionally export it.

    Args:
        path: the reference ``.pkl`` (for example ``churches.pkl``).
        out_dir: where to write ``config.json`` + ``model.safetensors`` (``Generator.from_pretrained``);
            nothing is written when None.
        network: which generator to take: "G_ema" (the one to sample from) or "G".
        upsampling: override the stored upsampling mode ("nearest" or "bilinear").
    """
    path = Path(path)
    data = load_reference_pickle(path)
    G_ref = select_network(data, network, path.name)
    G, variant, plan = convert_generator(G_ref, upsampling)
    metadata = {
        "imported_from": {
            "file": path.name,
            "sha256": sha256_file(path),
            "network": network,
            "variant": variant.to_dict(),
            "tensors_mapped": len(plan.moves),
            "tensors_skipped": sorted(plan.skipped),
        }
    }
    if out_dir is not None:
        out_dir = G.save_pretrained(out_dir, extra=metadata)
    return ImportResult(G, variant, plan, metadata, Path(out_dir) if out_dir is not None else None)
