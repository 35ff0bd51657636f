"""The analysis half of benchmarks/own_data.py: the classifier of the conditional model, and the report.

    python benchmarks/own_data.py classify --root R [--out docs/results/own-data]
    python benchmarks/own_data.py report   --root R [--out docs/results/own-data]

**classify:** a small CNN (three 3x3 conv + ReLU + 2x2 max-pool stages, 32-64-128 channels, a linear
head) trained on the 60,000 real training images at 32^2 (the data layer's resize), 3 epochs, Adam 1e-3,
batch 128, seed 0; its accuracy on the 10,000 real test images, per class; then, per class, the share of
500 samples of the conditional model (G_ema, psi 1, seeds 0..499) that it assigns to the class asked for.
**report:** the tables of every run (JSON), ADA's p against kimg, FID against kimg, and the per-class grid
of the conditional model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

SAMPLES_PER_CLASS = 500


def _real_split(split: str) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST's ``split`` ("train" or "test") at 32^2 in [-1, 1] [N, 1, 32, 32] and labels [N]."""
    from inrgan.data.idx import FASHION_MNIST_DIR, find_train_images, read_idx_images
    from inrgan.data.labels import fashion_mnist_labels
    from inrgan.data.transforms import resize_images

    images, _ = read_idx_images(find_train_images(FASHION_MNIST_DIR, split))
    images = resize_images(torch.from_numpy(np.array(images)).unsqueeze(1), 32).float() / 127.5 - 1
    return images, torch.from_numpy(fashion_mnist_labels(FASHION_MNIST_DIR, len(images), split).values)


def _classifier() -> nn.Module:
    def stage(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*stage(1, 32), *stage(32, 64), *stage(64, 128), nn.Flatten(), nn.Linear(128 * 16, 10))


def _train_classifier(images: Tensor, labels: Tensor, epochs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    net = _classifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(images)).split(128):
            loss = nn.functional.cross_entropy(net(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def _predict(net: nn.Module, images: Tensor) -> Tensor:
    return torch.cat([net(part).argmax(1) for part in images.split(500)])


def _per_class(pred: Tensor, labels: Tensor) -> list[float]:
    return [float((pred[labels == k] == k).float().mean()) for k in range(10)]


@torch.no_grad()
def _class_samples(G, k: int, n: int) -> Tensor:
    from inrgan.models.generator import one_hot

    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(1000 * k))
    return torch.cat([G(zb, one_hot(G, [k] * len(zb))) for zb in z.split(100)]).clamp(-1, 1)


def classify(root: Path, out: Path) -> None:
    from inrgan import Generator
    from inrgan.data.labels import FASHION_MNIST_CLASSES

    out.mkdir(parents=True, exist_ok=True)
    net = _train_classifier(*_real_split("train"))
    test_images, test_labels = _real_split("test")
    real = _per_class(_predict(net, test_images), test_labels)
    G = Generator.from_pretrained(root / "cond" / "fashion-mnist" / "export").eval()
    fake = []
    for k in range(10):
        pred = _predict(net, _class_samples(G, k, SAMPLES_PER_CLASS))
        fake.append(float((pred == k).float().mean()))
    result = {"classifier": "3-stage CNN, 3 epochs on the 60k training images at 32^2",
              "samples_per_class": SAMPLES_PER_CLASS, "classes": list(FASHION_MNIST_CLASSES),
              "real_test_accuracy": real, "real_test_accuracy_mean": float(np.mean(real)),
              "generated_accuracy": fake, "generated_accuracy_mean": float(np.mean(fake))}
    (out / "classifier.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _small_table(root: Path) -> dict:
    table: dict = {}
    for run in sorted((root / "small").glob("*-seed*")):
        aug, seed = run.name.rsplit("-seed", 1)
        for f in sorted(run.glob("fid2k-full-*kimg.json")):
            kimg = float(f.name[len("fid2k-full-"):-len("kimg.json")])
            value = json.loads(f.read_text())[0]["value"]
            table.setdefault(aug, {}).setdefault(str(kimg), {})[seed] = value
    return table


def _plot_ada_p(root: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for run in sorted((root / "small").glob("ada-seed*")):
        stats = _jsonl(run / "stats.jsonl")
        ax.plot([s["kimg"] for s in stats], [s.get("aug_p", 0.0) for s in stats], label=run.name)
    ax.set_xlabel("kimg")
    ax.set_ylabel("ADA p")
    ax.set_title("ADA's p on 1,000 images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ada_p.png", dpi=120)
    plt.close(fig)


def _plot_finetune(root: Path, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"scratch": "from scratch", "init": "--init-from the shipped run (G, D)",
             "init-freezed2": "the same, --freeze-d 2"}
    curves = {}
    fig, ax = plt.subplots(figsize=(5, 3))
    for run in sorted((root / "finetune").iterdir()):
        rows = [r for r in _jsonl(run / "metrics.jsonl") if r.get("metric") == "fid2k"]
        if rows:
            curves[run.name] = {str(r["kimg"]): r["value"] for r in rows}
            ax.plot([r["kimg"] for r in rows], [r["value"] for r in rows], marker="o",
                    label=names.get(run.name, run.name))
    ax.set_xlabel("kimg")
    ax.set_ylabel("FID2k (effnet-lite0) against the bags")
    ax.set_title("Fine-tuning onto Fashion-MNIST's bags")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "finetune_fid.png", dpi=120)
    plt.close(fig)
    return curves


def _class_grid(root: Path, out: Path) -> None:
    from inrgan import Generator
    from inrgan.rendering.images import save_grid

    G = Generator.from_pretrained(root / "cond" / "fashion-mnist" / "export").eval()
    rows = torch.cat([_class_samples(G, k, 10) for k in range(10)])  # [100, 1, 32, 32], a row per class
    save_grid(rows, out / "cond_classes.png", cols=10)


def report(root: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = {"small": _small_table(root)}
    _plot_ada_p(root, out)
    if (root / "finetune").is_dir():
        summary["finetune"] = _plot_finetune(root, out)
    cond = root / "cond" / "fashion-mnist"
    if (cond / "export").is_dir():
        summary["cond"] = {str(r["kimg"]): r["value"] for r in _jsonl(cond / "metrics.jsonl")}
        _class_grid(root, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
