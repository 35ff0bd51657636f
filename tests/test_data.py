"""The data layer: folders, zips and Fashion-MNIST opened as square uint8 images, and every bad input."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inrgan.cli import main
from inrgan.data import DatasetError, ImageDataset, make_dataset_zip, open_dataset
from inrgan.data import dataset as dataset_module
from inrgan.data.idx import FASHION_MNIST_DIR, FASHION_MNIST_ENV

RNG = np.random.default_rng(0)


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    """Write uint8 [H, W] or [H, W, 3] (or uint16 [H, W]) as an image file; PIL picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def noise(h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w) if c == 1 else (h, w, c)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def solid(h: int, w: int, colour: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (h, w, len(colour))).copy()


def write_idx(folder: Path, images: np.ndarray, gz: bool, magic: int = 2051, extra: bytes = b"") -> Path:
    """Fashion-MNIST's training files for uint8 [N, H, W] images (and zero labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    data = struct.pack(">4i", magic, n, h, w) + images.tobytes() + extra
    labels = struct.pack(">2i", 2049, n) + bytes(n)
    opener = gzip.compress if gz else bytes
    suffix = ".gz" if gz else ""
    (folder / f"train-images-idx3-ubyte{suffix}").write_bytes(opener(data))
    (folder / f"train-labels-idx1-ubyte{suffix}").write_bytes(opener(labels))
    return folder / f"train-images-idx3-ubyte{suffix}"


def pixels(ds: ImageDataset) -> torch.Tensor:
    return torch.stack([ds[i] for i in range(len(ds))])  # [N, C, R, R]


# --- pixels --------------------------------------------------------------------------------------------


def test_solid_colour_survives_crop_and_resize(tmp_path: Path) -> None:
    save(tmp_path / "a.png", solid(30, 40, (10, 200, 30)))
    ds = open_dataset(tmp_path, 16)
    assert isinstance(ds, ImageDataset)
    assert (len(ds), ds.resolution, ds.num_channels, ds.name) == (1, 16, 3, tmp_path.name)
    x = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 16, 16)
    assert x[:, 0, 0].tolist() == [10, 200, 30]
    assert (x == x[:, :1, :1]).all()


def test_linear_ramp_downscaled_by_two_is_the_ramp_at_the_new_centres(tmp_path: Path) -> None:
    ramp = np.tile((4 * np.arange(64) + 2).astype(np.uint8), (64, 1))  # [64, 64], value 4x + 2 at column x
    save(tmp_path / "ramp.png", ramp)
    x = open_dataset(tmp_path, 32)[0]  # output column j is centred on input x = 2j + 0.5
    assert x.shape == (1, 32, 32)
    assert (x == x[:, :1, :]).all()  # every row alike
    expected = 8 * torch.arange(32) + 4
    interior = slice(2, 30)  # cubic kernels reproduce a line exactly away from the clamped borders
    assert (x[0, 0, interior].int() - expected[interior]).abs().max() <= 1


@pytest.mark.parametrize("shape, kept", [((20, 24), (slice(0, 20), slice(2, 22))),
                                         ((25, 20), (slice(2, 22), slice(0, 20)))])
def test_non_square_images_keep_their_centre(tmp_path: Path, shape: tuple[int, int], kept: tuple) -> None:
    h, w = shape
    image = (np.arange(h)[:, None] * 7 + np.arange(w)[None, :] * 3).astype(np.uint8)  # [H, W], unique
    save(tmp_path / "x.png", image)
    x = open_dataset(tmp_path, 20)[0]  # no resize: only the crop
    assert torch.equal(x[0], torch.from_numpy(image[kept]))


def test_wide_image_loses_its_left_and_right_thirds(tmp_path: Path) -> None:
    image = np.concatenate([solid(20, 20, c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]], axis=1)
    save(tmp_path / "flag.png", image)
    x = open_dataset(tmp_path, 8)[0]
    assert (x == torch.tensor([0, 255, 0], dtype=torch.uint8)[:, None, None]).all()


def test_channels_are_detected_and_converted(tmp_path: Path) -> None:
    gray_dir, mixed_dir = tmp_path / "gray", tmp_path / "mixed"
    save(gray_dir / "l.png", solid(8, 8, (90,))[..., 0])
    save(gray_dir / "la.png", np.dstack([solid(8, 8, (40,))[..., 0], noise(8, 8, 1)]))  # mode LA
    Image.new("1", (8, 8), 1).save(gray_dir / "bw.png")
    save(gray_dir / "wide.png", np.full((8, 8), 257 * 100, dtype=np.uint16))  # 16-bit PNG, mode I;16
    ds = open_dataset(gray_dir, 8)
    assert ds.num_channels == 1
    assert [int(ds[i][0, 0, 0]) for i in range(len(ds))] == [255, 90, 40, 100]  # sorted: bw, l, la, wide

    shutil.copytree(gray_dir, mixed_dir)
    save(mixed_dir / "rgb.png", solid(8, 8, (255, 0, 0)))
    ds = open_dataset(mixed_dir, 8)
    assert ds.num_channels == 3
    assert ds[1][:, 0, 0].tolist() == [90, 90, 90]  # grayscale replicated
    assert ds[3][:, 0, 0].tolist() == [255, 0, 0]  # sorted: bw, l, la, rgb, wide

    luma = Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0))
    ds = open_dataset(mixed_dir, 8, channels=1)
    assert ds.num_channels == 1 and int(ds[3][0, 0, 0]) == luma == 76
    assert open_dataset(gray_dir, 8, channels=3)[1].shape == (3, 8, 8)


def test_all_formats_are_read_and_other_files_skipped(tmp_path: Path) -> None:
    image = solid(12, 12, (100, 150, 200))
    for ext in ["png", "jpg", "jpeg", "bmp", "webp", "gif", "tif", "tiff", "PNG"]:
        save(tmp_path / "sub" / f"img.{ext}", image, **({"lossless": True} if ext == "webp" else {}))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "dataset.json").write_text("{}")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1\2")
    (tmp_path / "sub" / "._img.png").write_bytes(b"AppleDouble junk")
    ds = open_dataset(tmp_path, 12)
    assert len(ds) == 9
    for i in range(len(ds)):
        assert (ds[i].int() - torch.tensor([100, 150, 200])[:, None, None]).abs().max() <= 8  # jpeg, gif


def test_max_images_and_indexing(tmp_path: Path) -> None:
    for i in range(5):
        save(tmp_path / f"{i}.png", solid(4, 4, (i * 10,))[..., 0])
    ds = open_dataset(tmp_path, 4, max_images=3)
    assert len(ds) == 3
    assert [int(ds[i][0, 0, 0]) for i in (0, 2, -1)] == [0, 20, 20]
    with pytest.raises(IndexError):
        ds[3]
    ds[0][0, 0, 0] = 99  # items are copies, never views of the dataset
    assert int(ds[0][0, 0, 0]) == 0
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch.shape == (3, 1, 4, 4) and batch.dtype == torch.uint8


@pytest.mark.parametrize("bad", [dict(resolution=0), dict(channels=2), dict(max_images=0)])
def test_bad_options(tmp_path: Path, bad: dict) -> None:
    save(tmp_path / "a.png", noise(4, 4))
    with pytest.raises(ValueError):
        open_dataset(tmp_path, **{"resolution": 4, **bad})


# --- zips ----------------------------------------------------------------------------------------------


def test_zip_round_trip_gives_the_folder_pixels(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for i, (h, w) in enumerate([(20, 30), (33, 21), (16, 16), (40, 40)]):
        save(folder / f"{i}.png", noise(h, w))
    calls = []
    assert make_dataset_zip(folder, tmp_path / "keep.zip", progress=lambda d, t: calls.append((d, t))) == 4
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert make_dataset_zip(folder, tmp_path / "r16.zip", resolution=16) == 4

    with zipfile.ZipFile(tmp_path / "keep.zip") as z:
        assert sorted(z.namelist()) == ["00000/img00000000.png", "00000/img00000001.png",
                                        "00000/img00000002.png", "00000/img00000003.png", "dataset.json"]
        assert json.loads(z.read("dataset.json")) == {"labels": None}
        assert Image.open(z.open("00000/img00000001.png")).size == (21, 21)  # cropped, not resized

    expected = pixels(open_dataset(folder, 16))
    for name in ["keep.zip", "r16.zip"]:
        ds = open_dataset(tmp_path / name, 16)
        assert ds.name == Path(name).stem and ds.num_channels == 3
        assert torch.equal(pixels(ds), expected)


def test_zip_with_images_anywhere_and_labels(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    save(folder / "a.png", solid(6, 6, (1,))[..., 0])
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.write(folder / "a.png", "deep/inside/a.png")
        z.write(folder / "a.png", "__MACOSX/deep/inside/._a.png")
        z.writestr("dataset.json", json.dumps({"labels": [["deep/inside/a.png", 3]]}))
        z.writestr("readme.txt", "skipped")
    ds = open_dataset(path, 6)
    assert len(ds) == 1 and ds.num_channels == 1 and int(ds[0].max()) == 1


def test_fashion_mnist_to_zip(tmp_path: Path) -> None:
    images = noise(10, 28 * 28, 1).reshape(10, 28, 28)
    write_idx(tmp_path / "idx", images, gz=True)
    source = f"fashion-mnist:{tmp_path / 'idx'}"
    assert make_dataset_zip(source, tmp_path / "fm.zip") == 10
    assert torch.equal(pixels(open_dataset(tmp_path / "fm.zip", 28)), torch.from_numpy(images)[:, None])
    make_dataset_zip(source, tmp_path / "fm3.zip", resolution=32, channels=3)
    ds = open_dataset(tmp_path / "fm3.zip", 32)
    assert ds.num_channels == 3 and torch.equal(pixels(ds), pixels(open_dataset(source, 32, channels=3)))


# --- fingerprints and lazy decoding --------------------------------------------------------------------


def test_fingerprint_follows_contents_not_location(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    save(folder / "x.png", noise(8, 8))
    save(folder / "y.png", noise(8, 8))
    base = open_dataset(folder, 8).fingerprint()
    assert len(base) == 64 and int(base, 16) >= 0
    assert open_dataset(folder, 8).fingerprint() == base
    shutil.copytree(folder, tmp_path / "b")
    assert open_dataset(tmp_path / "b", 8).fingerprint() == base
    assert open_dataset(folder, 4).fingerprint() != base
    assert open_dataset(folder, 8, channels=1).fingerprint() != base
    assert open_dataset(folder, 8, max_images=1).fingerprint() != base
    save(folder / "y.png", noise(8, 8))
    assert open_dataset(folder, 8).fingerprint() != base
    make_dataset_zip(folder, tmp_path / "a.zip")
    zipped = open_dataset(tmp_path / "a.zip", 8).fingerprint()
    save(folder / "y.png", noise(8, 8))
    make_dataset_zip(folder, tmp_path / "a.zip")
    assert open_dataset(tmp_path / "a.zip", 8).fingerprint() != zipped


def test_large_datasets_decode_lazily_with_the_same_pixels(tmp_path: Path, monkeypatch) -> None:
    for i in range(3):
        save(tmp_path / "imgs" / f"{i}.png", noise(10, 14))
    make_dataset_zip(tmp_path / "imgs", tmp_path / "imgs.zip")
    eager = pixels(open_dataset(tmp_path / "imgs", 8))
    monkeypatch.setattr(dataset_module, "PRELOAD_MAX_BYTES", 0)
    for source in [tmp_path / "imgs", tmp_path / "imgs.zip"]:
        ds = open_dataset(source, 8)
        assert isinstance(ds, dataset_module.ImageFileDataset)
        assert torch.equal(pixels(ds), eager)
        assert torch.equal(pixels(pickle.loads(pickle.dumps(ds))), eager)  # as DataLoader workers get it


def test_lazy_decoding_error_names_the_file(tmp_path: Path, monkeypatch) -> None:
    save(tmp_path / "good.jpg", noise(64, 64))
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])  # passes verify(), fails to decode
    monkeypatch.setattr(dataset_module, "PRELOAD_MAX_BYTES", 0)
    ds = open_dataset(tmp_path, 8)
    with pytest.raises(DatasetError, match="cut.jpg"):
        ds[0]
    monkeypatch.undo()
    with pytest.raises(DatasetError, match="cut.jpg"):  # small datasets decode at open time
        open_dataset(tmp_path, 8)


# --- Fashion-MNIST -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path: Path, gz: bool, monkeypatch) -> None:
    images = noise(7, 28 * 28, 1).reshape(7, 28, 28)
    write_idx(tmp_path, images, gz=gz)
    ds = open_dataset(f"fashion-mnist:{tmp_path}", 28)
    assert (len(ds), ds.num_channels, ds.name) == (7, 1, "fashion-mnist")
    assert torch.equal(pixels(ds), torch.from_numpy(images)[:, None])
    assert open_dataset(ds.source, 28).fingerprint() == ds.fingerprint()

    big = open_dataset(f"fashion-mnist:{tmp_path}", 32, channels=3, max_images=5)
    assert len(big) == 5 and big[0].shape == (3, 32, 32) and big[0].dtype == torch.uint8
    assert torch.equal(big[0][0], big[0][2])
    assert big.fingerprint() != ds.fingerprint()

    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    by_env = open_dataset("fashion-mnist", 28)
    assert by_env.source == "fashion-mnist" and by_env.fingerprint() == ds.fingerprint()


def test_fashion_mnist_resizes_per_item_when_too_big_for_memory(tmp_path: Path, monkeypatch) -> None:
    write_idx(tmp_path, noise(3, 28 * 28, 1).reshape(3, 28, 28), gz=False)
    expected = pixels(open_dataset(f"fashion-mnist:{tmp_path}", 40))
    monkeypatch.setattr(dataset_module, "PRELOAD_MAX_BYTES", 0)
    assert torch.equal(pixels(open_dataset(f"fashion-mnist:{tmp_path}", 40)), expected)


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch) -> None:
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    ds = open_dataset("fashion-mnist", 32)
    assert (len(ds), ds.num_channels, ds.resolution) == (60000, 1, 32)
    x = ds[59999]
    assert x.shape == (1, 32, 32) and x.dtype == torch.uint8 and 0 < x.float().mean() < 255


# --- bad inputs ----------------------------------------------------------------------------------------


def _truncated_png(tmp: Path) -> tuple[str, str]:
    save(tmp / "ok.png", noise(16, 16))
    data = save(tmp / "broken.png", noise(32, 32)).read_bytes()
    (tmp / "broken.png").write_bytes(data[: len(data) // 2])
    return str(tmp), "broken.png"


def _garbage_png(tmp: Path) -> tuple[str, str]:
    save(tmp / "ok.png", noise(16, 16))
    (tmp / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return str(tmp), "garbage.png"


def _text_as_jpg(tmp: Path) -> tuple[str, str]:
    save(tmp / "ok.png", noise(16, 16))
    (tmp / "sub").mkdir()
    (tmp / "sub" / "notes.jpg").write_text("I am not a JPEG")
    return str(tmp), "notes.jpg"


def _empty_folder(tmp: Path) -> tuple[str, str]:
    (tmp / "empty").mkdir()
    return str(tmp / "empty"), "empty"


def _no_images_folder(tmp: Path) -> tuple[str, str]:
    (tmp / "docs").mkdir()
    (tmp / "docs" / "readme.txt").write_text("hello")
    return str(tmp / "docs"), "docs"


def _missing_path(tmp: Path) -> tuple[str, str]:
    return str(tmp / "nowhere"), "nowhere"


def _not_a_dataset(tmp: Path) -> tuple[str, str]:
    return str(save(tmp / "single.png", noise(4, 4))), "single.png"


def _bad_zip(tmp: Path) -> tuple[str, str]:
    (tmp / "bad.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    return str(tmp / "bad.zip"), "bad.zip"


def _cut_zip(tmp: Path) -> tuple[str, str]:
    save(tmp / "a" / "x.png", noise(16, 16))
    make_dataset_zip(tmp / "a", tmp / "cut.zip")
    data = (tmp / "cut.zip").read_bytes()
    (tmp / "cut.zip").write_bytes(data[:-30])  # loses the end of the central directory
    return str(tmp / "cut.zip"), "cut.zip"


def _empty_zip(tmp: Path) -> tuple[str, str]:
    with zipfile.ZipFile(tmp / "hollow.zip", "w") as z:
        z.writestr("dataset.json", '{"labels": null}')
    return str(tmp / "hollow.zip"), "hollow.zip"


def _corrupt_zip_member(tmp: Path) -> tuple[str, str]:
    with zipfile.ZipFile(tmp / "z.zip", "w") as z:
        z.writestr("00000/img00000000.png", b"\x89PNG\r\n\x1a\n not a png")
    return str(tmp / "z.zip"), "img00000000.png"


def _zip_member_fails_crc(tmp: Path) -> tuple[str, str]:
    payload = (save(tmp / "x.png", noise(16, 16))).read_bytes()
    with zipfile.ZipFile(tmp / "z.zip", "w") as z:
        z.writestr("a/flipped.png", payload)
    data = bytearray((tmp / "z.zip").read_bytes())
    at = data.index(payload) + len(payload) // 2
    data[at] ^= 0xFF
    (tmp / "z.zip").write_bytes(bytes(data))
    return str(tmp / "z.zip"), "flipped.png"


def _bad_dataset_json(tmp: Path) -> tuple[str, str]:
    save(tmp / "x.png", noise(4, 4))
    with zipfile.ZipFile(tmp / "z.zip", "w") as z:
        z.write(tmp / "x.png", "x.png")
        z.writestr("dataset.json", "{labels: oops")
    return str(tmp / "z.zip"), "dataset.json"


def _fashion_mnist_absent(tmp: Path) -> tuple[str, str]:
    (tmp / "idx").mkdir()
    return f"fashion-mnist:{tmp / 'idx'}", "train-images-idx3-ubyte"


def _idx_wrong_magic(tmp: Path) -> tuple[str, str]:
    write_idx(tmp, noise(2, 28 * 28, 1).reshape(2, 28, 28), gz=True, magic=2049)
    return f"fashion-mnist:{tmp}", "train-images-idx3-ubyte.gz"


def _idx_wrong_length(tmp: Path) -> tuple[str, str]:
    write_idx(tmp, noise(2, 28 * 28, 1).reshape(2, 28, 28), gz=False, extra=b"\0")
    return f"fashion-mnist:{tmp}", "train-images-idx3-ubyte"


def _idx_truncated_gzip(tmp: Path) -> tuple[str, str]:
    path = write_idx(tmp, noise(2, 28 * 28, 1).reshape(2, 28, 28), gz=True)
    path.write_bytes(path.read_bytes()[:40])
    return f"fashion-mnist:{tmp}", "train-images-idx3-ubyte.gz"


BAD_INPUTS = [_truncated_png, _garbage_png, _text_as_jpg, _empty_folder, _no_images_folder, _missing_path,
              _not_a_dataset, _bad_zip, _cut_zip, _empty_zip, _corrupt_zip_member, _zip_member_fails_crc,
              _bad_dataset_json,
              _fashion_mnist_absent, _idx_wrong_magic, _idx_wrong_length, _idx_truncated_gzip]


@pytest.mark.parametrize("make_bad", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_is_a_dataset_error_naming_the_file(tmp_path: Path, make_bad) -> None:
    source, culprit = make_bad(tmp_path)
    with pytest.raises(DatasetError, match=culprit.replace(".", r"\.")):
        open_dataset(source, 8)
    with pytest.raises(DatasetError, match=culprit.replace(".", r"\.")):
        make_dataset_zip(source, tmp_path / "out" / "never.zip")
    assert not (tmp_path / "out" / "never.zip").exists()


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(DatasetError) as info:
        open_dataset("fashion-mnist", 32)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "https://github.com/zalandoresearch/fashion-mnist" in message
    assert "fashion-mnist:/path/to/folder" in message


def test_destination_must_be_a_zip(tmp_path: Path) -> None:
    save(tmp_path / "a" / "x.png", noise(4, 4))
    with pytest.raises(DatasetError, match="out.tar"):
        make_dataset_zip(tmp_path / "a", tmp_path / "out.tar")


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_writes_a_zip(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / "imgs" / f"{i}.png", noise(12, 10))
    out = tmp_path / "out.zip"
    result = CliRunner().invoke(main, ["dataset", str(tmp_path / "imgs"), str(out), "--resolution", "8",
                                       "--channels", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 images" in result.output
    ds = open_dataset(out, 8)
    assert (len(ds), ds.num_channels) == (3, 1)
    assert torch.equal(pixels(ds), pixels(open_dataset(tmp_path / "imgs", 8, channels=1)))


@pytest.mark.parametrize("make_bad", [_truncated_png, _bad_zip, _fashion_mnist_absent],
                         ids=lambda f: f.__name__.strip("_"))
def test_cli_bad_input_is_a_clean_error(tmp_path: Path, make_bad) -> None:
    source, culprit = make_bad(tmp_path)
    result = CliRunner().invoke(main, ["dataset", source, str(tmp_path / "out.zip")])
    assert result.exit_code == 1
    assert culprit in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out.zip").exists()
