"""Issue 18's measurements: small data with and without augmentation, conditional training, fine-tuning.

    python benchmarks/own_data.py prepare  --root R        # the data folders, from Fashion-MNIST
    python benchmarks/own_data.py train    --root R --job J # one queue of runs (small | finetune | cond)
    python benchmarks/own_data.py classify --root R        # per-class accuracy of the conditional model
    python benchmarks/own_data.py report   --root R --out docs/results/own-data

Every run is a plain `inrgan train` command, printed before it starts and kept in R/commands.txt, one
thread each (OMP_NUM_THREADS=1), so two queues can run side by side on two cores. A queue skips the runs
that are done and continues the ones that stopped (`--resume` is exact), so it can be re-run at will.

- **small:** a 1,000-image random subset of the training set (seed 0), 20 kimg, batch 16, the cpu-32
  recipe with R1 gamma 1.0 (every queue), with --aug none, ada and diffaugment, seeds 0 and 1; FID2k
  against the full training set every 10 kimg (`inrgan metrics`, after each leg). `--seeds 0 --kimg 40`
  continues the seed-0 runs to 40 kimg.
- **finetune:** the "Bag" class (6,000 images), 8 kimg, from scratch, from the shipped model's run
  (G and D), and from it with D's first 2 blocks frozen; FID2k against the bags every 2 kimg.
- **cond:** the whole training set with its 10 labels, --cond, 30 kimg.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHIPPED_RUN = REPO / "checkpoints" / "fashion-mnist-32"
SMALL_SIZE = 1000
FINETUNE_CLASS = 8  # "Bag"
SMALL_KIMG, SMALL_LEG, FINETUNE_KIMG, COND_KIMG = 20, 10, 8, 30
ARMS = ("none", "ada", "diffaugment")
SEEDS = (0, 1)


def _inrgan() -> list[str]:
    return [sys.executable, "-m", "inrgan"]


def _fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    from inrgan.data.idx import FASHION_MNIST_DIR, find_train_images, read_idx_images
    from inrgan.data.labels import fashion_mnist_labels

    images, _ = read_idx_images(find_train_images(FASHION_MNIST_DIR))
    return np.asarray(images), fashion_mnist_labels(FASHION_MNIST_DIR, len(images)).values


def _write_folder(folder: Path, images: np.ndarray) -> None:
    from PIL import Image

    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image, mode="L").save(tmp / f"{i:05d}.png")
    tmp.rename(folder)


def prepare(root: Path) -> None:
    """R/small-data: 1,000 random training images (seed 0); R/bag: every training bag."""
    images, labels = _fashion_mnist()
    if not (root / "small-data").is_dir():
        pick = np.sort(np.random.default_rng(0).choice(len(images), SMALL_SIZE, replace=False))
        _write_folder(root / "small-data", images[pick])
    if not (root / "bag").is_dir():
        _write_folder(root / "bag", images[labels == FINETUNE_CLASS])
    print(f"data in {root}/small-data ({SMALL_SIZE} images) and {root}/bag "
          f"({int((labels == FINETUNE_CLASS).sum())} images)")


def _runs(root: Path, job: str, seeds: tuple[int, ...] = SEEDS, kimg: float | None = None
          ) -> list[tuple[Path, float, list[str]]]:
    """(run directory, kimg, the options of a new run) for every run of a queue."""
    runs = []
    if job == "small":
        for seed in seeds:
            for aug in ARMS:
                extra = ["--ada-kimg", "10"] if aug == "ada" else []
                runs.append((root / "small" / f"{aug}-seed{seed}", kimg or SMALL_KIMG,
                             ["--data", str(root / "small-data"), "--aug", aug, *extra, "--seed", str(seed),
                              "--gamma", "1.0"]))
    elif job == "finetune":
        common = ["--data", str(root / "bag"), "--seed", "0", "--gamma", "1.0", "--metrics", "fid2k", "--metrics-every", "2"]
        runs += [(root / "finetune" / "scratch", FINETUNE_KIMG, common),
                 (root / "finetune" / "init", FINETUNE_KIMG, [*common, "--init-from", str(SHIPPED_RUN)]),
                 (root / "finetune" / "init-freezed2", FINETUNE_KIMG,
                  [*common, "--init-from", str(SHIPPED_RUN), "--freeze-d", "2"])]
    elif job == "cond":
        runs.append((root / "cond" / "fashion-mnist", COND_KIMG,
                     ["--data", "fashion-mnist", "--cond", "--seed", "0", "--gamma", "1.0", "--metrics", "fid2k",
                      "--metrics-every", "10"]))
    else:
        raise SystemExit(f"unknown job {job!r}: small, finetune or cond")
    return runs


def _done_kimg(run: Path) -> float:
    stats = run / "stats.jsonl"
    if not (run / "state.pt").is_file() or not stats.is_file():
        return -1.0
    lines = stats.read_text().splitlines()
    return json.loads(lines[-1])["kimg"] if lines else -1.0


def _log(root: Path, cmd: list[str]) -> None:
    line = "OMP_NUM_THREADS=1 inrgan " + shlex.join(cmd[3:])
    print(line, flush=True)
    with open(root / "commands.txt", "a") as f:
        f.write(line + "\n")


def _small_fid(root: Path, run: Path, kimg: float, env: dict) -> None:
    """FID2k of a small-data run against the full training set (not its own 1,000 images)."""
    out = run / f"fid2k-full-{float(kimg):g}kimg.json"
    if out.is_file():
        return
    cmd = [*_inrgan(), "metrics", "--checkpoint", str(run), "--data", "fashion-mnist", "--metrics", "fid2k",
           "--json"]
    _log(root, cmd)
    result = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    tmp = out.with_suffix(".tmp")
    tmp.write_text(result)
    tmp.rename(out)


def train(root: Path, job: str, seeds: tuple[int, ...] = SEEDS, kimg: float | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for run, run_kimg, options in _runs(root, job, seeds, kimg):
        if job == "small":  # legs of SMALL_LEG kimg, each measured against the full set
            for leg in np.arange(SMALL_LEG, run_kimg + 1e-6, SMALL_LEG):
                _train_to(root, run, float(leg), options, env)
                _small_fid(root, run, float(leg), env)
        else:
            _train_to(root, run, run_kimg, options, env)


def _train_to(root: Path, run: Path, kimg: float, options: list[str], env: dict) -> None:
    done = _done_kimg(run)
    if done >= kimg - 1e-6:
        return
    if done >= 0:
        cmd = [*_inrgan(), "train", "--resume", str(run), "--kimg", str(kimg), "--device", "cpu",
               "--no-progress"]
    else:
        cmd = [*_inrgan(), "train", "--out", str(run), "--kimg", str(kimg), "--device", "cpu",
               "--no-progress", *options]
    _log(root, cmd)
    subprocess.run(cmd, env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "train", "classify", "report"))
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--job", default="small")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="small: the training seeds")
    ap.add_argument("--kimg", type=float, help=f"small: kimg of each run (default {SMALL_KIMG})")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "own-data")
    args = ap.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    if args.step == "prepare":
        prepare(args.root)
    elif args.step == "train":
        train(args.root, args.job, tuple(args.seeds), args.kimg)
    elif args.step == "classify":
        from own_data_report import classify  # noqa: PLC0415 (the heavy half, written apart)

        classify(args.root, args.out)
    else:
        from own_data_report import report  # noqa: PLC0415

        report(args.root, args.out)


if __name__ == "__main__":
    main()
