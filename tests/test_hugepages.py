"""Parameters moved to huge-page memory: same objects and values, aligned, once, and still trainable."""

from __future__ import annotations

import pytest
import torch

from inrgan.models import Generator, hugepages
from test_fast_paths import _generator

needs_thp = pytest.mark.skipif(not hugepages.available(), reason="no transparent huge pages on this system")


def test_empty_is_aligned_writable_and_of_the_asked_shape():
    t = hugepages.empty((3, 5, 7), torch.float32)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32 and t.is_contiguous()
    assert t.data_ptr() % hugepages.HUGE_PAGE == 0
    t.fill_(2.5)
    assert t.sum().item() == 2.5 * 105


@needs_thp
def test_moved_parameters_keep_their_values_and_identity_and_move_once():
    big, small = torch.nn.Parameter(torch.randn(1024, 600)), torch.nn.Parameter(torch.randn(8, 8))
    before_big, before_small = big.detach().clone(), small.data_ptr()
    assert hugepages.move_to_huge_pages([big, small]) == big.numel() * 4  # the small one stays
    assert torch.equal(big, before_big) and big.data_ptr() % hugepages.HUGE_PAGE == 0
    assert small.data_ptr() == before_small and big.requires_grad
    assert hugepages.move_to_huge_pages([big, small]) == 0  # already there
    big.data = big.data.clone()  # given other storage: moved again
    assert hugepages.move_to_huge_pages([big]) == big.numel() * 4
    # still a trainable parameter (its storage made outside inference mode)
    with torch.inference_mode():
        hugepages.move_to_huge_pages([big])
    opt = torch.optim.SGD([big], lr=0.1)
    (big.sum()).backward()
    opt.step()
    assert torch.allclose(big, before_big - 0.1)


def test_nothing_moves_without_huge_pages(monkeypatch):
    monkeypatch.setattr(hugepages, "available", lambda: False)
    p = torch.nn.Parameter(torch.randn(1024, 600))
    ptr = p.data_ptr()
    assert hugepages.move_to_huge_pages([p]) == 0 and p.data_ptr() == ptr


@needs_thp
@pytest.mark.parametrize("on", [True, False])
def test_cpu_inference_moves_the_heads_and_the_model_still_saves_and_trains(on, tmp_path, monkeypatch):
    monkeypatch.setattr(hugepages, "HUGE_PAGE", 4096)  # this test model's heads are far below 2 MB
    G = _generator("cpu-32", 16)
    z = torch.randn(2, G.z_dim)
    G(z)  # with autograd: nothing moves
    G.train()
    with torch.no_grad():
        G(z)  # a model in training mode: nothing moves
    G.eval()
    heads = G.synthesis.head_weights()
    assert len(heads) == sum(len(b.layers()) + 1 for b in G.synthesis.blocks)
    assert not any(hasattr(w, hugepages._MOVED) for w in heads)
    G.synthesis.huge_pages = False
    with torch.no_grad():
        before = G(z)
        assert not any(hasattr(w, hugepages._MOVED) for w in heads)
        G.synthesis.huge_pages = on
        after = G(z)
    moved = [getattr(w, hugepages._MOVED, None) == w.data_ptr() for w in heads]
    assert all(moved) if on else not any(moved)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    G.save_pretrained(tmp_path / "g")
    loaded = Generator.from_pretrained(tmp_path / "g")
    for (name, a), (_, b) in zip(G.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    G.train()
    G(z).square().mean().backward()  # gradients reach the moved weights
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in heads)
