"""The INR-GAN generator: mapping network + multi-scale INR synthesis, saved as config.json + safetensors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import AnyGeneratorConfig, ConfigError, generator_config_from_dict
from ..io import CheckpointError, atomic_write_bytes, atomic_write_text
from .mapping import MappingNetwork
from .pixel_inr import PixelINRSynthesis
from .stylegan2 import StyleGAN2Synthesis
from .synthesis import SynthesisNetwork

EXPORT_FORMAT = "inrgan-generator"
EXPORT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class Generator(nn.Module):
    """z -> w -> INR parameters -> image, rendered on any grid: the paper's model, in plain PyTorch.

    ``inrgan.Generator`` is this model rendered through the fast paths of ``inrgan.accel``; the same
    parameters, the same function.

    Example::

        G = Generator(get_preset("cpu-32").G)
        img = G(torch.randn(4, G.z_dim), truncation_psi=0.7, height=96, width=128)
    """

    synthesis_class: type[nn.Module] = SynthesisNetwork
    families: tuple[str, ...] = ("inr-gan",)  # the generator families (config.FAMILY_CONFIGS) this class builds
    renders_any_grid = True  # any size, box, window and tile; StyleGAN2 renders its training grid only
    has_inr = True  # the synthesis network makes a sample's INR parameters (inr_parameters, render)

    def __init__(self, cfg: AnyGeneratorConfig) -> None:
        super().__init__()
        if cfg.family not in self.families:
            raise ConfigError(f"{type(self).__name__} builds the {', '.join(self.families)} family, not "
                              f"{cfg.family!r}: use {type(self).__name__}.build(cfg)")
        self.cfg = cfg
        self.z_dim, self.w_dim, self.img_channels = cfg.z_dim, cfg.w_dim, cfg.img_channels
        self.resolution = cfg.resolution
        self.synthesis = self.synthesis_class(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, self.num_ws, cfg.mapping_layers,
                                      cfg.mapping_lr_multiplier, cfg.w_avg_beta, c_dim=cfg.c_dim)
        self.c_dim, self.class_names = cfg.c_dim, cfg.class_names

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        height: int | None = None,
        width: int | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        tile: int | None = None,
        update_w_avg: bool | None = None,
        **render: Any,
    ) -> Tensor:
        """z [B, z_dim] -> images [B, img_channels, H, W], roughly in [-1, 1].

        Args:
            c: a conditional model's classes, one-hot [B, c_dim] (``one_hot(G, classes)``); None otherwise.
            truncation_psi, truncation_cutoff: the truncation trick towards ``w_avg``.
            height, width: output pixels (default: the training resolution).
            bbox: (x0, y0, x1, y1), the top-left and bottom-right of the rendered area in the training
                coordinate frame (default: the training box).
            tile: render in tiles of this size to bound memory (pixel-independent models only).
            render: further options of the synthesis network (``options=`` of ``inrgan.accel``'s).
        """
        ws = self.mapping(z, truncation_psi, truncation_cutoff, update_w_avg=update_w_avg, c=c)
        return self.synthesis(ws, height=height, width=width, bbox=bbox, tile=tile, **render)

    @classmethod
    def for_config(cls, cfg: AnyGeneratorConfig) -> type[Generator]:
        """The class that builds ``cfg``: this one where it takes cfg's family (``inrgan.Generator`` renders
        INR-GAN fast), the family's own otherwise."""
        return cls if cfg.family in cls.families else FAMILY_GENERATORS[cfg.family]

    @classmethod
    def build(cls, cfg: AnyGeneratorConfig) -> Generator:
        """The generator of any family's config (:meth:`for_config`)."""
        return cls.for_config(cfg)(cfg)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Generator:
        """Load an export directory (config.json + model.safetensors), a training run directory, or a shipped
        model by name (``"fashion-mnist-32"``, see ``inrgan.pretrained``)."""
        from safetensors.torch import load_file

        from ..pretrained import resolve_checkpoint

        path = resolve_checkpoint(path)
        if (path / "export" / CONFIG_NAME).is_file():  # a run directory
            path = path / "export"
        cfg_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not cfg_path.is_file() or not weights_path.is_file():
            from ..pretrained import SHIPPED

            raise FileNotFoundError(f"{path}: not a generator export (needs {CONFIG_NAME} and {WEIGHTS_NAME}), "
                                    f"a run directory with export/, nor a shipped model ({', '.join(SHIPPED)})")
        G = cls.build(_read_export_config(cfg_path))
        try:
            state = load_file(str(weights_path), device=str(map_location))
        except Exception as e:  # safetensors' own error types: a torn or foreign file
            raise CheckpointError(f"{weights_path}: not a readable safetensors file (truncated or foreign: "
                                  f"{str(e).strip()[:200]})") from e
        expected = G.state_dict()
        wrong = sorted(set(expected) ^ set(state)) + sorted(
            k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
        if wrong:
            raise CheckpointError(f"{weights_path}: its tensors do not fit the model in {cfg_path.name} "
                                  f"({len(wrong)} missing, unexpected or of another shape, e.g. {wrong[0]!r})")
        G.load_state_dict(state, strict=True)
        return G.eval().requires_grad_(False)

    def save_pretrained(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write config.json and model.safetensors into ``path`` (each atomically)."""
        from safetensors.torch import save

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write_bytes(path / WEIGHTS_NAME, save(state))
        meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "config": self.cfg.to_dict(), **(extra or {})}
        atomic_write_text(path / CONFIG_NAME, json.dumps(meta, indent=2))
        return path


class StyleGAN2Generator(Generator):
    """StyleGAN2's generator (models/stylegan2.py) on the same mapping network; its training grid only."""

    synthesis_class = StyleGAN2Synthesis
    families = ("stylegan2",)
    renders_any_grid = False
    has_inr = False


class PixelINRGenerator(Generator):
    """A single-scale per-pixel INR (models/pixel_inr.py): the ablation ladder's first rungs and CIPS."""

    synthesis_class = PixelINRSynthesis
    families = ("latent-inr", "hyper-inr", "cips")


FAMILY_GENERATORS: dict[str, type[Generator]] = {
    "inr-gan": Generator, "stylegan2": StyleGAN2Generator, **{f: PixelINRGenerator for f in PixelINRGenerator.families}}


def _read_export_config(cfg_path: Path) -> AnyGeneratorConfig:
    """The generator config of an export's config.json, or a CheckpointError naming the file."""
    try:
        meta = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{cfg_path}: format {found!r} is not {EXPORT_FORMAT!r}")
    try:
        return generator_config_from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: not a generator config ({e})") from e


def seed_latents(seeds, z_dim: int, device: str | torch.device = "cpu") -> Tensor:
    """z [len(seeds), z_dim]: each row from its own seed (numpy's RandomState, as the reference code), so a
    seed's latent does not depend on the others."""
    import numpy as np

    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).float().to(device)


def one_hot(G: Generator, classes) -> Tensor:
    """One-hot c [B, c_dim] of class indices or names (``G.class_names``), for a conditional G."""
    if not G.c_dim:
        raise ValueError("this model is unconditional: it has no classes")
    index = []
    for k in classes:
        if isinstance(k, str) and not k.lstrip("-").isdigit():
            if k not in G.class_names:
                raise ValueError(f"unknown class {k!r}; this model's classes are {list(G.class_names)}")
            index.append(G.class_names.index(k))
        else:
            if not 0 <= int(k) < G.c_dim:
                raise ValueError(f"class {k} is not one of 0..{G.c_dim - 1} ({', '.join(G.class_names)})")
            index.append(int(k))
    return torch.nn.functional.one_hot(torch.tensor(index), G.c_dim).float()
