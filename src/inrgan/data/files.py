"""The image files of a folder or a StyleGAN2-ADA zip: listing, reading bytes, naming them in errors.

Files are listed recursively and sorted by their relative path (with "/"). A file without an image
extension is skipped; so are hidden files and folders (".DS_Store", "._x.png" AppleDouble files) and
"__MACOSX". A file *with* an image extension is expected to be an image.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .errors import DatasetError
from .transforms import IMAGE_EXTENSIONS


def _is_listed(relative: str) -> bool:
    parts = PurePosixPath(relative).parts
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return PurePosixPath(relative).suffix.lower() in IMAGE_EXTENSIONS


class ImageFiles:
    """Sorted image file names under a folder or inside a zip, and their bytes."""

    path: Path
    names: list[str]

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def where(self, name: str) -> str:
        """The file as a person would find it, for error messages."""
        raise NotImplementedError


class FolderFiles(ImageFiles):
    """The images of a folder and its subfolders."""

    def __init__(self, path: Path) -> None:
        self.path = path
        names = []
        for root, dirs, files in os.walk(path, onerror=self._walk_error):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
            rel_root = Path(root).relative_to(path).as_posix()
            for f in files:
                relative = f if rel_root == "." else f"{rel_root}/{f}"
                if _is_listed(relative):
                    names.append(relative)
        self.names = sorted(names)

    def _walk_error(self, error: OSError) -> None:
        raise DatasetError(f"{error.filename}: cannot list folder ({error.strerror})") from error

    def read(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except OSError as e:
            raise DatasetError(f"{self.where(name)}: cannot read file ({e.strerror})") from e

    def where(self, name: str) -> str:
        return str(self.path / name)


class ZipFiles(ImageFiles):
    """The images inside a zip (StyleGAN2-ADA layout: anywhere inside, plus an optional dataset.json).

    The open ``ZipFile`` is per process and is not pickled, so DataLoader workers reopen it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._pid = -1
        archive = self._archive()
        self.names = sorted(i.filename for i in archive.infolist() if not i.is_dir() and _is_listed(i.filename))
        if "dataset.json" in archive.namelist():
            try:
                json.loads(self.read("dataset.json"))
            except ValueError as e:
                raise DatasetError(f"{self.where('dataset.json')}: not valid JSON ({e})") from e

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DatasetError(f"{self.path}: not a readable zip file ({e})") from e
            self._pid = os.getpid()
        return self._zip

    def read(self, name: str) -> bytes:
        try:
            return self._archive().read(name)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as e:
            raise DatasetError(f"{self.where(name)}: cannot read from the zip ({e})") from e

    def where(self, name: str) -> str:
        return f"{self.path}:{name}"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None, "_pid": -1}


def open_image_files(path: Path) -> ImageFiles:
    """List the images of a folder or a .zip; a missing path, another kind of file or no images is an error."""
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        files: ImageFiles = FolderFiles(path)
    elif path.suffix.lower() == ".zip":
        files = ZipFiles(path)
    else:
        raise DatasetError(f"{path}: not a dataset; expected a folder of images, a .zip of images, "
                           "'fashion-mnist' or 'fashion-mnist:/path/to/idx/folder'")
    if not files.names:
        raise DatasetError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, "
                           "in subfolders too)")
    return files
