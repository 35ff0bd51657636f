"""Import the officially released INR-GAN generators (reference network pickles) safely and exactly.

``import_official("churches.pkl", "exports/churches")`` reads the pickle with a restricted unpickler (no
code from the file runs), detects the variant, maps every tensor onto our release-compatible
configuration, and writes ``config.json`` + ``model.safetensors`` for ``Generator.from_pretrained``.
"""

from .convert import (
    RELEASE_PRESETS,
    ImportResult,
    ReferenceVariant,
    TensorMove,
    WeightMap,
    convert_generator,
    detect_variant,
    import_official,
    plan_weight_map,
    select_network,
)
from .unpickle import ModuleRecord, OfficialPickleError, ReferenceUnpickler, load_reference_pickle

__all__ = [
    "RELEASE_PRESETS",
    "ImportResult",
    "ModuleRecord",
    "OfficialPickleError",
    "ReferenceUnpickler",
    "ReferenceVariant",
    "TensorMove",
    "WeightMap",
    "convert_generator",
    "detect_variant",
    "import_official",
    "load_reference_pickle",
    "plan_weight_map",
    "select_network",
]
