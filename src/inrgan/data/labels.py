"""Class labels of a dataset, from the three places users keep them.

- **Fashion-MNIST:** ``train-labels-idx1-ubyte`` (gzipped or not) beside the images: 10 named classes.
- **dataset.json** at the root of a folder or zip, StyleGAN2-ADA's format:
  ``{"labels": [["00000/img00000000.png", 6], ...]}`` (``"labels": null`` for none). An optional
  ``"class_names": ["cat", "dog", ...]`` names the classes; without it they are named by their numbers.
- **One sub-folder per class:** with no dataset.json, when every image lies exactly one folder deep
  and there are at least two folders, the folders (sorted) are the classes.

A label file that does not fit its images is an error that names it: a missing or extra entry, a
non-integer, a negative label, or a label beyond the named classes.
"""

from __future__ import annotations

import gzip
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import DatasetError
from .idx import IDX_LABELS_MAGIC, _split_file

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
TRAIN_LABELS = "train-labels-idx1-ubyte"
META_NAME = "dataset.json"


@dataclass(frozen=True)
class Labels:
    """One class index per image, and the classes' names (``len(names)`` classes)."""

    values: np.ndarray  # int64 [N]
    names: tuple[str, ...]
    source: str  # where they came from, for messages

    def subset(self, count: int | None) -> Labels:
        return self if count is None else Labels(self.values[:count], self.names, self.source)


def fashion_mnist_labels(folder: Path, count: int, split: str = "train") -> Labels:
    """A split's labels ("train", or "test": t10k-labels-idx1-ubyte) beside its images."""
    name = _split_file(TRAIN_LABELS, split)
    path = next((folder / n for n in (name + ".gz", name) if (folder / n).is_file()), None)
    if path is None:
        raise DatasetError(f"{folder}: no {name}(.gz) beside the Fashion-MNIST images, so no labels")
    try:
        data = path.read_bytes()
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read IDX file ({e})") from e
    if len(data) < 8 or struct.unpack(">2i", data[:8]) != (IDX_LABELS_MAGIC, len(data) - 8):
        raise DatasetError(f"{path}: not an IDX label file of {len(data) - 8} labels")
    values = np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    if len(values) != count:
        raise DatasetError(f"{path}: {len(values)} labels for {count} images")
    return _checked(values, FASHION_MNIST_CLASSES, str(path))


def _read_meta(path: Path) -> bytes | None:
    if path.is_dir():
        meta = path / META_NAME
        return meta.read_bytes() if meta.is_file() else None
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(META_NAME) if META_NAME in z.namelist() else None
    except (OSError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: cannot read {META_NAME} ({e})") from e


def file_labels(path: Path, names: list[str]) -> Labels | None:
    """Labels of the images ``names`` of a folder or zip: dataset.json, else sub-folders, else None."""
    raw = _read_meta(path)
    if raw is not None:
        return _dataset_json(raw, f"{path}/{META_NAME}" if path.is_dir() else f"{path}:{META_NAME}", names)
    folders = [PurePosixPath(n).parts for n in names]
    if all(len(p) == 2 for p in folders) and len({p[0] for p in folders}) >= 2:
        classes = tuple(sorted({p[0] for p in folders}))
        index = {c: i for i, c in enumerate(classes)}
        return Labels(np.array([index[p[0]] for p in folders], dtype=np.int64), classes, f"{path} (sub-folders)")
    return None


def _dataset_json(raw: bytes, where: str, names: list[str]) -> Labels | None:
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{where}: not valid JSON ({e})") from e
    entries = meta.get("labels") if isinstance(meta, dict) else None
    if entries is None:
        return None
    if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 2 for e in entries):
        raise DatasetError(f"{where}: 'labels' must be a list of [file name, class index] pairs")
    table = {}
    for name, label in entries:
        if not isinstance(label, int) or isinstance(label, bool):
            raise DatasetError(f"{where}: the label of {name!r} is {label!r}, not an integer class index")
        table[str(name).replace("\\", "/")] = label
    missing = [n for n in names if n not in table]
    extra = sorted(set(table) - set(names))
    if missing or extra:
        what = f"no label for {len(missing)} image(s), e.g. {missing[0]!r}" if missing else \
            f"labels for {len(extra)} file(s) that are not images here, e.g. {extra[0]!r}"
        raise DatasetError(f"{where}: {len(table)} labels for {len(names)} images: {what}")
    values = np.array([table[n] for n in names], dtype=np.int64)
    names_given = meta.get("class_names")
    classes = tuple(str(c) for c in names_given) if names_given else tuple(str(i) for i in range(values.max() + 1))
    return _checked(values, classes, where)


def _checked(values: np.ndarray, classes: tuple[str, ...], where: str) -> Labels:
    if len(values) and values.min() < 0:
        raise DatasetError(f"{where}: a negative class index ({values.min()})")
    if len(values) and values.max() >= len(classes):
        raise DatasetError(f"{where}: class index {values.max()} is not one of the {len(classes)} named classes")
    return Labels(values, classes, where)
