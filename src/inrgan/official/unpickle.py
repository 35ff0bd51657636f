"""Read a reference INR-GAN network pickle without running anything stored in it.

The reference code (built on StyleGAN2-ADA) pickles its networks with ``torch_utils.persistence``: each
module becomes a call ``_reconstruct_persistent_obj(meta)`` whose ``meta`` carries the module's whole
source code, the class name and the object's ``__dict__``. The stock unpickler ``exec``s that source.

:class:`ReferenceUnpickler` resolves only a fixed set of globals:

- tensor and storage reconstruction, through our own checked wrappers (storages are read back with
  ``torch.load(..., weights_only=True)``), and the plain containers ``OrderedDict``, ``set``, ``frozenset``;
- ``_reconstruct_persistent_obj`` becomes :class:`ModuleRecord`, an inert record of the class name and
  state (the source code is kept as text and never run); ``torch.nn`` containers likewise;
- objects of the configuration and numeric libraries the reference stores beside its modules
  (``omegaconf``, ``dnnlib``, ``numpy``, ``typing`` and builtin type names) become inert placeholders
  that only remember how the pickle built them.

Any other global (``os.system``, ``builtins.eval``, ...) stops the load with :class:`OfficialPickleError`
before it could be called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

import torch
from torch import Tensor

PERSISTENT_RECONSTRUCT = ("torch_utils.persistence", "_reconstruct_persistent_obj")
TORCH_CONTAINERS = ("ModuleList", "Sequential", "ModuleDict")
INERT_PACKAGES = ("omegaconf", "dnnlib", "numpy", "typing")
INERT_BUILTINS = frozenset(
    {"dict", "list", "tuple", "str", "int", "float", "bool", "bytes", "object", "type", "NoneType", "complex"}
)


class OfficialPickleError(ValueError):
    """A file that is not a reference INR-GAN network pickle, or one this importer cannot map."""


# ----------------------------------------------------------------------------------------------
# Inert stand-ins.


class ModuleRecord:
    """Inert stand-in for one pickled module: its class name and its state (the module's ``__dict__``).

    Parameters, buffers and submodules are read from ``state['_parameters']``, ``state['_buffers']`` and
    ``state['_modules']``, exactly where ``torch.nn.Module`` keeps them. ``module_src`` is the source code
    the reference pickled with the class; it is kept as text for information and never executed.
    """

    def __init__(
        self,
        class_name: str,
        state: dict[str, Any],
        module_src: str | None = None,
        version: int | None = None,
    ) -> None:
        self.class_name, self.state, self.module_src, self.version = class_name, state, module_src, version

    def get(self, name: str, default: Any = None) -> Any:
        """A plain attribute of the pickled object (for example ``resolution``), or ``default``."""
        return self.state.get(name, default)

    @property
    def parameters(self) -> dict[str, Tensor]:
        return {k: v for k, v in _mapping(self.state.get("_parameters")).items() if v is not None}

    @property
    def buffers(self) -> dict[str, Tensor]:
        skip = self.state.get("_non_persistent_buffers_set") or set()
        return {
            k: v for k, v in _mapping(self.state.get("_buffers")).items() if v is not None and k not in skip
        }

    @property
    def children(self) -> dict[str, ModuleRecord]:
        children = {}
        for name, child in _mapping(self.state.get("_modules")).items():
            if child is None:
                continue
            if not isinstance(child, ModuleRecord):
                raise OfficialPickleError(
                    f"submodule {name!r} of {self.class_name} is a "
                    f"{type(child).__name__}, not a pickled module"
                )
            children[name] = child
        return children

    def child(self, name: str) -> ModuleRecord | None:
        return self.children.get(name)

    def named_tensors(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Parameters and persistent buffers of this record and its children, named like ``state_dict()``."""
        for name, t in (*self.parameters.items(), *self.buffers.items()):
            if not isinstance(t, Tensor):
                raise OfficialPickleError(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
            yield prefix + name, t
        for name, child in self.children.items():
            yield from child.named_tensors(f"{prefix}{name}.")

    def named_attribute_tensors(self, prefix: str = "") -> Iterator[str]:
        """Names of tensors held as plain attributes (caches such as the reference's coordinate features)."""
        for name, value in self.state.items():
            if isinstance(value, Tensor):
                yield prefix + name
        for name, child in self.children.items():
            yield from child.named_attribute_tensors(f"{prefix}{name}.")

    def __repr__(self) -> str:
        return f"ModuleRecord({self.class_name}, {len(self.parameters)} parameters, {len(self.children)} children)"


def _mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OfficialPickleError(f"expected a dict of module entries, got {type(value).__name__}")
    return value


class TorchContainerRecord(ModuleRecord):
    """Stand-in for ``torch.nn.ModuleList`` / ``Sequential`` / ``ModuleDict``, which pickle as plain objects."""

    container_name: ClassVar[str] = "ModuleList"

    def __new__(cls, *args: Any, **kwargs: Any) -> TorchContainerRecord:
        self = super().__new__(cls)
        ModuleRecord.__init__(self, cls.container_name, {})
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # state arrives through __setstate__
        pass

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise OfficialPickleError(
                f"{self.container_name}: expected a state dict, got {type(state).__name__}"
            )
        self.state = state


class InertObject:
    """Placeholder for an object of a foreign class: it remembers its constructor arguments, state and items.

    Nothing of the foreign class is imported or called; ``origin`` names the global it stands for.
    """

    origin: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        self = super().__new__(cls)
        self.args, self.state, self.items, self.list_items = args, None, {}, []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.origin}>"


class InertDict(dict):
    """Placeholder for a ``dict`` subclass (``dnnlib.EasyDict``): its items stay readable as a plain dict."""

    origin: ClassVar[str] = "?"

    def __setstate__(self, state: Any) -> None:
        self.inert_state = state

    def __repr__(self) -> str:
        return f"<inert {self.origin} {dict.__repr__(self)}>"


# ----------------------------------------------------------------------------------------------
# Checked replacements for the torch reconstruction functions.


def _load_storage(data: Any) -> Any:
    """``torch.storage._load_from_bytes``: a storage saved by ``torch.save``, read with ``weights_only``."""
    if not isinstance(data, (bytes, bytearray)):
        raise OfficialPickleError(f"storage payload must be bytes, got {type(data).__name__}")
    storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise OfficialPickleError(f"storage payload holds a {type(storage).__name__}, not a storage")
    return storage


def _check_ints(name: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(type(v) is int for v in values):
        raise OfficialPickleError(f"tensor {name} must be a tuple of ints, got {values!r}")
    return tuple(values)


def _rebuild_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> Tensor:
    """``torch._utils._rebuild_tensor_v2`` for plain tensors only: no hooks, no metadata, bounds checked."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise OfficialPickleError(f"tensor storage must be a torch storage, got {type(storage).__name__}")
    if backward_hooks or metadata:
        raise OfficialPickleError("tensors with backward hooks or metadata are not allowed")
    if type(storage_offset) is not int or storage_offset < 0:
        raise OfficialPickleError(f"tensor storage offset must be a non-negative int, got {storage_offset!r}")
    size, stride = _check_ints("size", size), _check_ints("stride", stride)
    if len(size) != len(stride) or any(v < 0 for v in (*size, *stride)):
        raise OfficialPickleError(f"tensor size {size} and stride {stride} do not match")
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= len(storage):
            raise OfficialPickleError(
                f"tensor of size {size} reads past its storage of {len(storage)} elements"
            )
    dtype = storage.dtype if isinstance(storage, torch.TypedStorage) else torch.uint8
    untyped = storage._untyped_storage if isinstance(storage, torch.TypedStorage) else storage
    return torch.empty(0, dtype=dtype).set_(untyped, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Tensor:
    """``torch._utils._rebuild_parameter``: the parameter's data as a plain tensor."""
    if not isinstance(data, Tensor):
        raise OfficialPickleError(f"parameter data must be a tensor, got {type(data).__name__}")
    if backward_hooks:
        raise OfficialPickleError("parameters with backward hooks are not allowed")
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> Tensor:
    if state:
        raise OfficialPickleError("parameters with extra Python state are not allowed")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _reconstruct_record(meta: Any) -> ModuleRecord:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: record, never execute."""
    if not isinstance(meta, dict):
        raise OfficialPickleError(f"persistent-class record must be a dict, got {type(meta).__name__}")
    kind, class_name, state = meta.get("type"), meta.get("class_name"), meta.get("state")
    if kind != "class" or not isinstance(class_name, str) or not isinstance(state, dict):
        raise OfficialPickleError(
            f"malformed persistent-class record (type={kind!r}, class_name={class_name!r})"
        )
    src = meta.get("module_src")
    return ModuleRecord(class_name, state, src if isinstance(src, str) else None, meta.get("version"))


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise OfficialPickleError("_codecs.encode is allowed only to restore latin-1 bytes")
    return text.encode("latin1")


SAFE_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_encode,
    PERSISTENT_RECONSTRUCT: _reconstruct_record,
}


class ReferenceUnpickler(pickle.Unpickler):
    """An unpickler that builds tensors, plain containers and inert records, and refuses everything else."""

    def __init__(self, file: IO[bytes], source: str = "pickle") -> None:
        super().__init__(file)
        self.source = source
        self._placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in SAFE_GLOBALS:
            return SAFE_GLOBALS[key]
        if module == "torch.nn.modules.container" and name in TORCH_CONTAINERS:
            return self._placeholder(key, TorchContainerRecord, container_name=name)
        if module.split(".")[0] in INERT_PACKAGES or (module == "builtins" and name in INERT_BUILTINS):
            return self._placeholder(key, InertDict if name.endswith("EasyDict") else InertObject)
        if module == "collections" and name == "defaultdict":
            return self._placeholder(key, InertObject)
        raise OfficialPickleError(
            f"{self.source}: refusing to load global {module}.{name}: a reference INR-GAN network pickle holds "
            f"only tensors, plain containers and persistent-class records. Nothing from the file was executed."
        )

    def _placeholder(self, key: tuple[str, str], base: type, **attrs: Any) -> type:
        if key not in self._placeholders:
            origin = ".".join(key)
            self._placeholders[key] = type(f"Inert[{origin}]", (base,), {"origin": origin, **attrs})
        return self._placeholders[key]

    def persistent_load(self, pid: Any) -> Any:
        raise OfficialPickleError(f"{self.source}: persistent ids are not part of a reference network pickle")


def load_reference_pickle(path: str | os.PathLike | IO[bytes]) -> Any:
    """Unpickle a reference network file (a dict with ``G``, ``D``, ``G_ema``...) into inert records.

    Raises:
        OfficialPickleError: the file is not a pickle, or it needs a global outside the allowed set
            (nothing from it was run).
    """
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as f:
            return _load(f, Path(path).name)
    return _load(path, getattr(path, "name", "pickle"))


def _load(f: IO[bytes], source: str) -> Any:
    head = f.read(2)
    f.seek(0)
    if head == b"PK":
        raise OfficialPickleError(
            f"{source}: this is a zip archive (a torch.save checkpoint?), not a reference network pickle"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
            return ReferenceUnpickler(f, source).load()
    except OfficialPickleError:
        raise
    except Exception as e:  # any malformed stream: report it as what it is
        raise OfficialPickleError(
            f"{source}: not a readable reference network pickle ({type(e).__name__}: {e})"
        ) from e
