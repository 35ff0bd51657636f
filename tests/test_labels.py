"""Class labels and class-conditional models: labels from each source, bad labels refused, conditional
G and D, the export round trip, and --cond / --class from the command line."""

from __future__ import annotations

import dataclasses
import gzip
import json
import struct
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inrgan import Discriminator, Generator, get_preset
from inrgan.cli import main
from inrgan.data import DatasetError, open_dataset
from inrgan.data.labels import FASHION_MNIST_CLASSES
from inrgan.models.generator import one_hot


def _png(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8), "L").save(path)


def test_fashion_mnist_labels_come_from_the_label_file(tmp_path):
    images = np.arange(5 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(5, 28, 28)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(struct.pack(">4i", 2051, 5, 28, 28) +
                                                                        images.tobytes()))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, 5) + bytes([9, 0, 3, 3, 7]))
    ds = open_dataset(f"fashion-mnist:{tmp_path}", 16)
    assert ds.labels.values.tolist() == [9, 0, 3, 3, 7] and ds.labels.names == FASHION_MNIST_CLASSES
    assert open_dataset(f"fashion-mnist:{tmp_path}", 16, max_images=2).labels.values.tolist() == [9, 0]
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, 4) + bytes([9, 0, 3, 3]))
    with pytest.raises(DatasetError, match="4 labels for 5 images|not an IDX label file"):
        open_dataset(f"fashion-mnist:{tmp_path}", 16)


def test_the_test_split_is_read_by_its_own_file_names(tmp_path):
    from inrgan.data.idx import find_train_images, read_idx_images
    from inrgan.data.labels import fashion_mnist_labels

    for prefix, n, first in (("train", 3, 1), ("t10k", 2, 200)):
        images = np.full((n, 28, 28), first, np.uint8)
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4i", 2051, n, 28, 28) + images.tobytes())
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(struct.pack(">2i", 2049, n) + bytes(range(first % 10, first % 10 + n))))
    test, _ = read_idx_images(find_train_images(tmp_path, "test"))
    assert np.asarray(test).shape == (2, 28, 28) and int(np.asarray(test)[0, 0, 0]) == 200
    assert fashion_mnist_labels(tmp_path, 2, "test").values.tolist() == [0, 1]
    assert fashion_mnist_labels(tmp_path, 3).values.tolist() == [1, 2, 3]
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        fashion_mnist_labels(tmp_path, 2, "test")
    with pytest.raises(ValueError, match="split"):
        find_train_images(tmp_path, "validation")


def test_dataset_json_in_a_folder_and_a_zip(tmp_path):
    folder = tmp_path / "f"
    for i in range(4):
        _png(folder / f"img{i}.png", 40 * i)
    meta = {"labels": [[f"img{i}.png", i % 2] for i in range(4)], "class_names": ["cat", "dog"]}
    (folder / "dataset.json").write_text(json.dumps(meta))
    ds = open_dataset(folder, 16)
    assert ds.labels.values.tolist() == [0, 1, 0, 1] and ds.labels.names == ("cat", "dog")
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        for i in range(4):
            z.write(folder / f"img{i}.png", f"00000/img{i}.png")
        z.writestr("dataset.json", json.dumps({"labels": [[f"00000/img{i}.png", 3 - i] for i in range(4)]}))
    ds = open_dataset(tmp_path / "d.zip", 16)
    assert ds.labels.values.tolist() == [3, 2, 1, 0] and ds.labels.names == ("0", "1", "2", "3")
    ds.return_labels = True
    image, label = ds[1]
    assert label == 2 and image.shape == (1, 16, 16)


def test_one_sub_folder_per_class(tmp_path):
    for cls, n in (("boots", 2), ("bags", 3)):
        for i in range(n):
            _png(tmp_path / cls / f"{i}.png", 100)
    ds = open_dataset(tmp_path, 16)
    assert ds.labels.names == ("bags", "boots") and ds.labels.values.tolist() == [0, 0, 0, 1, 1]
    _png(tmp_path / "loose.png", 3)  # an image outside the class folders: no labels
    assert open_dataset(tmp_path, 16).labels is None


@pytest.mark.parametrize("labels,message", [
    ([["a.png", 0]], "2 labels for 3 images|1 labels for 3 images"),  # wrong count
    ([["a.png", 0], ["b.png", 1], ["c.png", 1], ["zz.png", 0]], "not images here"),
    ([["a.png", 0], ["b.png", "shoe"], ["c.png", 1]], "'shoe', not an integer"),
    ([["a.png", 0], ["b.png", 1.5], ["c.png", 1]], "1.5, not an integer"),
    ([["a.png", 0], ["b.png", -1], ["c.png", 1]], "negative class index"),
    ([["a.png", 0], ["b.png", 5], ["c.png", 1]], "class index 5 is not one of the 2 named classes"),
])
def test_bad_labels_are_refused_naming_the_file(tmp_path, labels, message):
    for n in "abc":
        _png(tmp_path / f"{n}.png", 9)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels, "class_names": ["x", "y"]}))
    with pytest.raises(DatasetError, match=message) as e:
        open_dataset(tmp_path, 16)
    assert "dataset.json" in str(e.value)


def _conditional(names=("a", "b", "c")):
    p = get_preset("cpu-32", 16, 1)
    return dataclasses.replace(p.G, class_names=names), dataclasses.replace(p.D, c_dim=len(names))


def test_conditional_generator_and_discriminator():
    g_cfg, d_cfg = _conditional()
    torch.manual_seed(0)
    G, D = Generator(g_cfg).eval(), Discriminator(d_cfg)
    z = torch.randn(1, G.z_dim).repeat(3, 1)
    c = one_hot(G, ["a", 1, "c"])
    assert c.tolist() == torch.eye(3).tolist()
    with torch.no_grad():
        img = G(z, c)
        assert img.shape == (3, 1, 16, 16)
        assert (img[0] - img[1]).abs().max() > 1e-3  # the same z, another class: another image
        assert D(img, c=c).shape == (3, 1)
    with pytest.raises(ValueError, match="conditional on 3 classes"):
        G(z)
    with pytest.raises(ValueError, match="give c"):
        D(img)
    with pytest.raises(ValueError, match="unknown class 'd'"):
        one_hot(G, ["d"])
    unconditional = Generator(get_preset("cpu-32", 16, 1).G)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(z, c)


def test_a_conditional_export_round_trips(tmp_path):
    g_cfg, _ = _conditional(("T-shirt/top", "Bag"))
    torch.manual_seed(1)
    G = Generator(g_cfg).eval().requires_grad_(False)
    G.save_pretrained(tmp_path / "export")
    G2 = Generator.from_pretrained(tmp_path / "export")
    assert G2.class_names == ("T-shirt/top", "Bag") and G2.c_dim == 2
    z, c = torch.randn(2, G.z_dim), one_hot(G, [0, 1])
    torch.testing.assert_close(G2(z, c), G(z, c), rtol=0, atol=0)


def test_cond_from_the_command_line(tmp_path):
    data = tmp_path / "data"
    for cls, value in (("bag", 30), ("boot", 220)):
        for i in range(4):
            _png(data / cls / f"{i}.png", value)
    common = ["--preset", "cpu-32", "--resolution", "16", "--batch", "4", "--tick", "0.008", "--kimg", "0.008",
              "--device", "cpu", "--no-progress", "--threads", "1"]
    run = CliRunner().invoke
    r = run(main, ["train", "--data", str(data), "--out", str(tmp_path / "plain"), *common], catch_exceptions=False)
    assert r.exit_code == 0 and r.output.count("they are ignored: pass --cond") == 1, r.output
    r = run(main, ["train", "--data", str(data), "--out", str(tmp_path / "cond"), "--cond", *common],
            catch_exceptions=False)
    assert r.exit_code == 0, r.output
    G = Generator.from_pretrained(tmp_path / "cond")
    assert G.class_names == ("bag", "boot")
    r = run(main, ["generate", "--checkpoint", str(tmp_path / "cond"), "--seeds", "0-1", "--class", "boot",
                   "--out", str(tmp_path / "g")])
    assert r.exit_code == 0 and (tmp_path / "g" / "seed0001.png").is_file(), r.output
    r = run(main, ["generate", "--checkpoint", str(tmp_path / "cond"), "--seeds", "0", "--out", str(tmp_path / "g")])
    assert r.exit_code == 2 and "this model is conditional: give --class" in r.output
    r = run(main, ["generate", "--checkpoint", str(tmp_path / "cond"), "--seeds", "0", "--class", "hat",
                   "--out", str(tmp_path / "g")])
    assert r.exit_code == 2 and "unknown class 'hat'" in r.output
    r = run(main, ["generate", "--checkpoint", str(tmp_path / "plain"), "--seeds", "0", "--class", "1",
                   "--out", str(tmp_path / "g")])
    assert r.exit_code == 2 and "unconditional" in r.output
    _png(tmp_path / "flat" / "x.png", 5)
    _png(tmp_path / "flat" / "y.png", 5)
    r = run(main, ["train", "--data", str(tmp_path / "flat"), "--out", str(tmp_path / "nolabels"), "--cond", *common])
    assert r.exit_code == 1 and "has no class labels" in r.output
