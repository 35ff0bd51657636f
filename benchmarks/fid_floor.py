"""The floor of the metrics: real Fashion-MNIST test images against real training images.

    python benchmarks/fid_floor.py [--num 10000] [--resolution 32] [--features effnet-lite0]

The same protocol as `inrgan metrics --metrics fidNk,kidNk,prNk`: the training images are the fixed
random subset that the metrics use (inrgan.metrics.evaluate.real_subset), at the training resolution
through the data layer's resize; the "generated" side is the first N test images, resized the same
way. A generator can score no better than this at the same N: it is the distance between two samples
of the real distribution. Prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import math

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=10_000)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--features", default="effnet-lite0")
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()

    from inrgan.data import open_dataset
    from inrgan.data.idx import FASHION_MNIST_DIR, find_train_images, read_idx_images
    from inrgan.data.transforms import resize_images
    from inrgan.metrics import build_extractor
    from inrgan.metrics.evaluate import embed, real_batches, real_subset
    from inrgan.metrics.frechet import feature_statistics, frechet_distance
    from inrgan.metrics.kid import kernel_distance
    from inrgan.metrics.precision_recall import precision_recall

    extractor = build_extractor(args.features)
    train = open_dataset("fashion-mnist", args.resolution)
    idx = real_subset(args.num, len(train))
    batches = math.ceil(len(idx) / args.batch)
    with torch.inference_mode():
        real = embed(extractor, real_batches(train, idx, args.batch), batches, "train", progress=False)
        test, _ = read_idx_images(find_train_images(FASHION_MNIST_DIR, "test"))
        test = resize_images(torch.from_numpy(test[: args.num].copy()).unsqueeze(1), args.resolution)
        fake = embed(extractor, iter(test.split(args.batch)), batches, "test", progress=False)
    fid = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    kid, kid_std = kernel_distance(real, fake)
    precision, recall = precision_recall(real, fake)
    print(json.dumps({"protocol": f"test {len(fake)} vs train {len(real)} (metrics' subset), {args.resolution}px, "
                                  f"{args.features}", "fid": fid, "kid": kid, "kid_std": kid_std,
                      "precision": precision, "recall": recall}))


if __name__ == "__main__":
    main()
