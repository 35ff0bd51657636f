"""Importing reference network pickles: restricted unpickling, variant detection, complete weight maps.

The fixture pickles are built here from stand-in classes that pickle exactly like the reference's
persistent-class records (``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with the module
source, class name and ``__dict__`` state), with ``torch.nn.ModuleList``, omegaconf/dnnlib objects and
numpy scalars beside them. No reference code is involved: the stand-in modules live in ``sys.modules``
only for the duration of a test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import sys
import types
import typing
import zlib
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from inrgan import Generator, LevelConfig, get_preset
from inrgan.cli import main
from inrgan.official import (
    ModuleRecord,
    OfficialPickleError,
    detect_variant,
    import_official,
    load_reference_pickle,
    plan_weight_map,
)
from inrgan.official.unpickle import _rebuild_tensor

VARIANTS = ("inr-gan", "inr-gan-noextra", "inr-gan-bil")
FIR = torch.tensor([1.0, 3.0, 3.0, 1.0]).outer(torch.tensor([1.0, 3.0, 3.0, 1.0])) / 64


# ----------------------------------------------------------------------------------------------
# Stand-ins for the reference's pickled objects.


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that any code run from a pickle under test would create."""
    return tmp_path / "EXECUTED"


@pytest.fixture
def reference_modules(monkeypatch: pytest.MonkeyPatch, marker: Path) -> types.SimpleNamespace:
    """Stand-in modules with the names the reference pickles refer to, registered in sys.modules."""

    def _reconstruct_persistent_obj(meta: dict) -> Any:  # a canary: the importer must never call it
        marker.write_text("persistence hook ran")
        raise AssertionError("the reference reconstruction hook was called")

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        for key, value in attrs.items():
            value.__module__, value.__qualname__ = name, key
            setattr(mod, key, value)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    class DictConfig:
        def __init__(self, content: dict) -> None:
            self._content, self._metadata = content, {"ref_type": typing.Any, "object_type": dict}
            self._resolver_cache = defaultdict(dict)

    class EasyDict(dict):
        pass

    module("torch_utils")
    persistence = module("torch_utils.persistence", _reconstruct_persistent_obj=_reconstruct_persistent_obj)
    module("omegaconf")
    module("omegaconf.dictconfig", DictConfig=DictConfig)
    module("dnnlib")
    module("dnnlib.util", EasyDict=EasyDict)
    return types.SimpleNamespace(
        persistence=persistence,
        DictConfig=DictConfig,
        EasyDict=EasyDict,
        module_src=f"open({str(marker)!r}, 'w').write('module source ran')\n",
    )


class StandIn:
    """Pickles like an instance of a reference persistent class."""

    def __init__(
        self,
        env: types.SimpleNamespace,
        class_name: str,
        params: dict | None = None,
        buffers: dict | None = None,
        modules: dict | None = None,
        **attrs: Any,
    ) -> None:
        self.env, self.class_name = env, class_name
        self.state = {
            "training": False,
            "_parameters": OrderedDict(
                (k, torch.nn.Parameter(v, requires_grad=False)) for k, v in (params or {}).items()
            ),
            "_buffers": OrderedDict(buffers or {}),
            "_non_persistent_buffers_set": set(),
            "_backward_hooks": OrderedDict(),
            "_forward_hooks": OrderedDict(),
            "_forward_pre_hooks": OrderedDict(),
            "_state_dict_hooks": OrderedDict(),
            "_load_state_dict_pre_hooks": OrderedDict(),
            "_modules": OrderedDict(modules or {}),
            **attrs,
        }

    def __reduce__(self) -> tuple:
        meta = dict(
            type="class",
            version=6,
            module_src=self.env.module_src,
            class_name=self.class_name,
            state=self.state,
        )
        return self.env.persistence._reconstruct_persistent_obj, (meta,)

    def record(self) -> ModuleRecord:
        """The record the importer would read, built directly (no pickling), for shape-only tests."""
        return ModuleRecord(self.class_name, {**self.state, "_modules": _records(self.state["_modules"])})


def _records(modules: dict[str, Any]) -> OrderedDict[str, ModuleRecord]:
    return OrderedDict(
        (
            k,
            ModuleRecord("ModuleList", {"_modules": _records(v._modules)})
            if isinstance(v, torch.nn.ModuleList)
            else v.record(),
        )
        for k, v in modules.items()
    )


def _module_list(items: list[StandIn]) -> torch.nn.ModuleList:
    """A real ``torch.nn.ModuleList`` holding stand-ins: it pickles as the reference's do (NEWOBJ + BUILD)."""
    modules = torch.nn.ModuleList()
    for i, item in enumerate(items):
        modules._modules[str(i)] = item  # type: ignore[assignment]
    return modules


def _reference_tree(env: types.SimpleNamespace, G: Generator, upsampling: str | None) -> StandIn:
    """Lay out our generator's tensors as the reference generator holds them (names, shapes, classes)."""
    cfg = G.cfg

    def fc(layer: Any, **attrs: Any) -> StandIn:
        return StandIn(
            env,
            "FullyConnectedLayer",
            {"weight": layer.weight, "bias": layer.bias},
            weight_gain=np.float64(layer.weight_gain),
            **attrs,
        )

    def fmm(layer: Any, instance_norm: bool) -> StandIn:
        return StandIn(
            env,
            "SynthesisLayer",
            {"weight": layer.weight[:, :, None, None], "bias": layer.bias},
            {"resample_filter": FIR},
            {"affine": fc(layer.affine, bias_gain=1)},
            instance_norm=instance_norm,
            activation="lrelu",
            conv_clamp=None,
            cfg=env.DictConfig({}),
        )

    def fuser(emb: Any, res: int) -> StandIn:
        buffers = {"log_basis": emb.log_basis}
        if emb.gaussian_basis.shape[0]:
            buffers["random_basis"] = emb.gaussian_basis
        return StandIn(
            env,
            "CoordFuser",
            {"const_embs": emb.const[None]},
            buffers,
            resolution=res,
            use_cosine=True,
            use_raw_coords=False,
            _fourier_embs_cache=torch.zeros(1, 2, res, res),
        )

    norm = cfg.instance_norm
    blocks = {}
    for res, block in zip(cfg.block_resolutions, G.synthesis.blocks, strict=True):
        modules: dict[str, StandIn] = {}
        if res == 4:
            coords = StandIn(
                env, "CoordsInput", modules={"coord_fuser": fuser(G.synthesis.embeddings[0], cfg.first_grid)}
            )
            modules["input"] = StandIn(env, "GenInput", modules={"input": coords})
        else:
            if res > cfg.first_grid:
                level = cfg.grid_resolutions.index(res)
                modules["coord_fuser"] = fuser(G.synthesis.embeddings[level], res)
            modules["conv0"] = fmm(block.conv0, False)
        modules["conv1"] = fmm(block.conv1, norm and res > 4)
        if res in cfg.extra_layers:
            modules["extra_convs"] = _module_list([fmm(block.extra[0], norm)])
        modules["torgb"] = StandIn(
            env,
            "ToRGBLayer",
            {"weight": block.torgb.weight[:, :, None, None], "bias": block.torgb.bias},
            modules={"affine": fc(block.torgb.affine)},
        )
        blocks[f"b{res}"] = StandIn(
            env,
            "SynthesisBlock",
            buffers={"resample_filter": FIR},
            modules=modules,
            resolution=max(res, cfg.first_grid),
            use_fp16=False,
        )
    mapping = StandIn(
        env,
        "MappingNetwork",
        buffers={"w_avg": G.mapping.w_avg},
        modules={
            f"fc{i}": fc(getattr(G.mapping, f"fc{i}"), bias_gain=cfg.mapping_lr_multiplier)
            for i in range(cfg.mapping_layers)
        },
        w_avg_beta=cfg.w_avg_beta,
        num_ws=G.num_ws,
    )
    synthesis = StandIn(env, "SynthesisNetwork", modules=blocks, img_resolution=cfg.resolution)
    init_kwargs = {
        "z_dim": cfg.z_dim,
        "c_dim": 0,
        "w_dim": cfg.w_dim,
        "img_resolution": cfg.resolution,
        "img_channels": cfg.img_channels,
        "mapping_kwargs": env.EasyDict(num_layers=cfg.mapping_layers),
    }
    if upsampling is not None:
        init_kwargs["cfg"] = {
            "upsampling_mode": upsampling,
            "use_noise": False,
            "fmm": {"enabled": True, "rank": cfg.fmm_rank, "activation": "demod", "instance_norm": norm},
            "input": {"type": "coords", "resolution": cfg.first_grid, "coord_fuser_cfg": "${coords}"},
        }
    return StandIn(
        env,
        "Generator",
        modules={"synthesis": synthesis, "mapping": mapping},
        z_dim=cfg.z_dim,
        c_dim=0,
        _init_kwargs=init_kwargs,
    )


def _narrow_release_config(name: str, resolution: int, **overrides):
    """A release-style generator with narrow layers and an extra layer at the top resolution (except
    noextra): every feature of the variant, fast on a CPU."""
    preset = get_preset(name, resolution=resolution).G
    return dataclasses.replace(
        preset,
        z_dim=32,
        w_dim=32,
        channel_base=512,
        channel_max=32,
        fmm_rank=4,
        extra_layers=(resolution,) if name != "inr-gan-noextra" else (),
        levels=(
            LevelConfig(log_diagonals=True, const=4),
            LevelConfig(log_diagonals=False, gaussian=4, const=4),
        ),
        **overrides,
    )


def _small_config(name: str):
    """The release-style generator at 64^2."""
    return _narrow_release_config(name, 64)


def _random_generator(cfg) -> Generator:
    torch.manual_seed(0)
    G = Generator(cfg).eval().requires_grad_(False)
    with torch.no_grad():  # perturb what initialises to constants, so that a wrong mapping shows
        for name, p in G.named_parameters():
            if name.endswith("bias") or name.endswith("const"):
                p.add_(torch.randn_like(p) * 0.3)
        G.mapping.w_avg.normal_(0, 0.5)
    return G


def golden_config(name: str):
    """The 32^2 release-style generator (first grid 16) whose reference outputs are stored in tests/data."""
    return _narrow_release_config(name, 32, first_grid=16)


def golden_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Deterministic values for a reference tensor, seeded by its name alone (no model code involved)."""
    # numpy's legacy RandomState keeps its stream stable across versions, so the recorded outputs stay valid.
    t = torch.from_numpy(np.random.RandomState(zlib.crc32(name.encode())).standard_normal(shape)).float()
    if name.startswith("mapping.fc") and name.endswith(".weight"):
        return t * 100  # the reference stores mapping weights as N(0, 1 / lr_multiplier^2)
    if name.endswith("torgb.affine.bias"):
        return 1 + 0.3 * t
    if name.endswith("bias") or name.endswith("w_avg"):
        return 0.3 * t
    if name.endswith("random_basis") or name.endswith("log_basis"):
        return 3 * t
    return t


def golden_z() -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(7).standard_normal((1, 32))).float()


def _fill_golden(node: Any, prefix: str = "") -> None:
    """Overwrite every tensor of a stand-in tree (except the unused FIR filters) with golden values."""
    state = node.state if isinstance(node, StandIn) else node.__dict__
    for name, t in state["_parameters"].items():
        state["_parameters"][name] = torch.nn.Parameter(golden_tensor(prefix + name, t.shape), False)
    for name, t in state["_buffers"].items():
        if name != "resample_filter":
            state["_buffers"][name] = golden_tensor(prefix + name, t.shape)
    for name, child in state["_modules"].items():
        _fill_golden(child, f"{prefix}{name}.")


def _write_snapshot(path: Path, env: types.SimpleNamespace, G_ema: StandIn, **extra: Any) -> Path:
    """Pickle like the reference training loop: a dict with G, D, G_ema, augment_pipe, training_set_kwargs."""
    D = StandIn(
        env,
        "Discriminator",
        modules={"b64": StandIn(env, "DiscriminatorBlock", {"w": torch.randn(3)}, {"resample_filter": FIR})},
    )
    data = {
        "training_set_kwargs": {"path": "data/x.zip", "xflip": True},
        "G": G_ema,
        "D": D,
        "G_ema": G_ema,
        "augment_pipe": None,
        **extra,
    }
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


# ----------------------------------------------------------------------------------------------
# Import and reproduce.


@pytest.mark.parametrize("name", VARIANTS)
def test_fixture_pickle_imports_completely_and_reproduces(name, reference_modules, marker, tmp_path):
    cfg = _small_config(name)
    G = _random_generator(cfg)
    upsampling = "bilinear" if name == "inr-gan-bil" else "nearest"
    pkl = _write_snapshot(
        tmp_path / f"{name}.pkl", reference_modules, _reference_tree(reference_modules, G, upsampling)
    )

    result = import_official(pkl, tmp_path / "export")
    assert not marker.exists(), "code from the pickle ran"
    assert result.variant.config == cfg
    n_layers = sum(b.num_conv for b in G.synthesis.blocks) + len(cfg.block_resolutions)  # FMM + ToRGB
    n_embeddings = sum(2 + (lc.gaussian > 0) for lc in cfg.levels)  # log basis, const, Gaussian basis
    assert len(result.weight_map.moves) == 2 * cfg.mapping_layers + 1 + 4 * n_layers + n_embeddings
    skipped = sorted(result.weight_map.skipped)
    filters = [n for n in skipped if n.endswith(".resample_filter")]
    caches = [n for n in skipped if n.endswith("._fourier_embs_cache")]
    assert len(filters) == n_layers  # one per FMM layer and one per block (none in ToRGB)
    assert len(caches) == len(cfg.levels) and len(filters) + len(caches) == len(skipped)
    moved = {m.target for m in result.weight_map.moves} | set(result.weight_map.empty)
    assert moved == {n for n, _ in (*G.named_parameters(), *G.named_buffers())}

    meta = json.loads((tmp_path / "export" / "config.json").read_text())["imported_from"]
    assert meta["sha256"] == hashlib.sha256(pkl.read_bytes()).hexdigest()
    assert meta["file"] == pkl.name and meta["network"] == "G_ema"
    assert meta["variant"]["upsampling"] == upsampling
    assert meta["variant"]["extra_layers"] == list(cfg.extra_layers)

    G2 = Generator.from_pretrained(tmp_path / "export")
    z = torch.randn(2, cfg.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for psi in (1.0, 0.7):
            assert torch.equal(G2(z, truncation_psi=psi), G(z, truncation_psi=psi))
        big = G2(z[:1], truncation_psi=0.7, height=96, width=128)  # continuous rendering at another size
    assert big.shape == (1, 3, 96, 128) and big.isfinite().all()


@pytest.mark.parametrize("name", VARIANTS)
def test_imported_generator_matches_outputs_recorded_from_the_reference_code(
    name, reference_modules, tmp_path
):
    """tests/data/official_golden.safetensors holds what the reference code computed for the golden weights.

    It was recorded once, outside this repository, by building the reference generator for
    ``golden_config(name)``, filling every tensor with ``golden_tensor`` and rendering ``golden_z()``.
    """
    from safetensors.torch import load_file

    golden = load_file(Path(__file__).parent / "data" / "official_golden.safetensors")
    cfg = golden_config(name)
    upsampling = "bilinear" if name == "inr-gan-bil" else "nearest"
    tree = _reference_tree(reference_modules, Generator(cfg), upsampling)
    _fill_golden(tree)
    G = import_official(_write_snapshot(tmp_path / "golden.pkl", reference_modules, tree)).generator
    assert G.cfg == cfg
    with torch.no_grad():
        for psi in (1.0, 0.7):
            expected = golden[f"{name}/psi{psi}"]
            assert (G(golden_z(), truncation_psi=psi) - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("name", VARIANTS)
def test_weight_map_is_complete_for_the_released_architecture(name, reference_modules):
    preset = get_preset(name).G
    with torch.device("meta"):
        G = Generator(preset)
    record = _reference_tree(
        reference_modules, G, "bilinear" if name == "inr-gan-bil" else "nearest"
    ).record()

    variant = detect_variant(record)
    assert variant.preset == name and variant.config == preset
    reference = {n: t.shape for n, t in record.named_tensors()}
    ours = {n: tuple(t.shape) for n, t in (*G.named_parameters(), *G.named_buffers())}
    plan = plan_weight_map(reference, ours, preset.first_grid)
    used = {m.source for m in plan.moves} | set(plan.skipped)
    assert used == set(reference)  # every reference tensor used or knowingly skipped
    assert {m.target for m in plan.moves} | set(plan.empty) == set(ours)  # none of ours left unfilled
    assert len(plan.moves) == (103 if preset.extra_layers else 95)
    assert all(math.prod(ours[n]) == 0 for n in plan.empty)


def test_weight_map_reports_leftover_and_missing_tensors():
    ours = {"mapping.w_avg": (8,), "mapping.fc0.weight": (8, 8), "synthesis.blocks.0.torgb.bias": (3,)}
    reference = {
        "mapping.w_avg": (8,),
        "mapping.fc0.weight": (8, 8),
        "synthesis.b4.conv1.noise_strength": (),
        "synthesis.b4.resample_filter": (4, 4),
    }
    with pytest.raises(OfficialPickleError) as e:
        plan_weight_map(reference, ours, 32)
    assert "synthesis.b4.conv1.noise_strength" in str(e.value)  # left over
    assert "synthesis.blocks.0.torgb.bias" in str(e.value)  # missing
    with pytest.raises(OfficialPickleError, match="shape mismatches"):
        plan_weight_map({"mapping.w_avg": (9,)}, {"mapping.w_avg": (8,)}, 32)


def test_upsampling_is_needed_when_the_pickle_does_not_store_it(reference_modules, tmp_path):
    cfg = _small_config("inr-gan-noextra")
    G = _random_generator(cfg)
    pkl = _write_snapshot(
        tmp_path / "nocfg.pkl", reference_modules, _reference_tree(reference_modules, G, None)
    )
    with pytest.raises(OfficialPickleError, match="upsampling"):
        import_official(pkl)
    assert import_official(pkl, upsampling="nearest").variant.config == cfg


def test_cli_imports_and_reports(reference_modules, marker, tmp_path):
    cfg = _small_config("inr-gan-bil")
    G = _random_generator(cfg)
    pkl = _write_snapshot(
        tmp_path / "bil.pkl", reference_modules, _reference_tree(reference_modules, G, "bilinear")
    )
    out = tmp_path / "export"
    result = CliRunner().invoke(main, ["import-official", str(pkl), str(out)])
    assert result.exit_code == 0, result.output
    assert "bilinear upsampling" in result.output and "none left over, none missing" in result.output
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# Refusals: nothing from a hostile or foreign pickle runs.


class _Shell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return eval, (f"open({str(self.marker)!r}, 'w')",)


def test_malicious_pickle_is_refused_and_nothing_runs(marker, tmp_path):
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"G_ema": _Shell(marker)}))
    with pytest.raises(OfficialPickleError, match=r"refusing to load global (posix|os)\.system") as e:
        import_official(pkl, tmp_path / "out")
    assert "Nothing from the file was executed" in str(e.value)
    assert not marker.exists() and not (tmp_path / "out").exists()

    pkl.write_bytes(pickle.dumps([1, _Eval(marker)]))
    with pytest.raises(OfficialPickleError, match=r"builtins\.eval"):
        load_reference_pickle(pkl)
    assert not marker.exists()

    result = CliRunner().invoke(main, ["import-official", str(pkl), str(tmp_path / "out")])
    assert result.exit_code == 1 and "Error:" in result.output and "refusing" in result.output
    assert not marker.exists()


def test_malicious_object_inside_a_network_record_is_refused(reference_modules, marker, tmp_path):
    G = _random_generator(_small_config("inr-gan-noextra"))
    tree = _reference_tree(reference_modules, G, "nearest")
    tree.state["payload"] = _Shell(marker)
    pkl = _write_snapshot(tmp_path / "trojan.pkl", reference_modules, tree)
    with pytest.raises(OfficialPickleError, match="refusing"):
        import_official(pkl)
    assert not marker.exists()


def test_non_network_files_are_refused_clearly(reference_modules, tmp_path):
    cases = {
        "dict.pkl": (
            pickle.dumps({"weights": [1.0, 2.0], "step": 3}),
            r"no 'G_ema' entry \(keys: \['step', 'weights'\]\)",
        ),
        "list.pkl": (pickle.dumps([1, 2, 3]), "holds a list, not a dict"),
        "garbage.pkl": (b"\x80\x04definitely not a pickle", "not a readable reference network pickle"),
        "empty.pkl": (b"", "not a readable reference network pickle"),
    }
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    cases["model.pt"] = (buf.getvalue(), "zip archive")
    disc = StandIn(reference_modules, "Discriminator")
    cases["disc.pkl"] = (pickle.dumps({"G_ema": disc}), "is a Discriminator, not the reference Generator")
    for name, (payload, message) in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(OfficialPickleError, match=message):
            import_official(tmp_path / name)


def test_tensor_reconstruction_is_bounds_checked():
    storage = torch.arange(4.0).untyped_storage()
    typed = torch.TypedStorage(wrap_storage=storage, dtype=torch.float32, _internal=True)
    assert torch.equal(_rebuild_tensor(typed, 1, (3,), (1,)), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(OfficialPickleError, match="past its storage"):
        _rebuild_tensor(typed, 0, (8, 8), (8, 1))
    with pytest.raises(OfficialPickleError, match="hooks"):
        _rebuild_tensor(typed, 0, (4,), (1,), False, OrderedDict(hook=print))
