"""mmkgbench.parallel: loops split across threads give the numbers of the loop run in one thread."""
from __future__ import annotations

import pytest
import torch

from mmkgbench import layers, model, parallel
from mmkgbench.layers import drop_mask, masked_contraction
from mmkgbench.model import l1_distance_all, modulus_distance_all


@pytest.mark.parametrize("n,threads,align", [(10, 2, 1), (1024, 2, 8), (1001, 3, 8), (5, 4, 8), (0, 2, 1)])
def test_parts_cover_the_range_once_at_aligned_boundaries(n, threads, align):
    ps = parallel.parts(n, threads, align)
    assert [i for lo, hi in ps for i in range(lo, hi)] == list(range(n))
    assert len(ps) <= threads and all(lo % align == 0 for lo, _ in ps)


def inline(n, fn, **kw):
    return [fn(0, n)]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_split_contraction_is_bit_identical_to_one_thread(two_threads, monkeypatch):
    g = torch.Generator().manual_seed(0)
    B, D, U = 300, 32, 7
    x, w, gy = torch.randn(B, D, generator=g), torch.randn(U, D * D, generator=g), torch.randn(B, D, generator=g)
    index = torch.randint(U, (B,), generator=g)
    torch.manual_seed(0)
    mask = drop_mask((B, D * D), 0.4)
    out = []
    for split in (True, False):
        if not split:
            monkeypatch.setattr(layers, "split_run", inline)
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = masked_contraction(xr, wr, index, mask, chunk_bytes=16 * D * D * 4)
        y.backward(gy)
        out.append((y.detach(), xr.grad, wr.grad))
    for a, b in zip(*out):
        assert torch.equal(a, b)


def test_split_distances_are_bit_identical_to_one_thread(two_threads, monkeypatch):
    g = torch.Generator().manual_seed(1)
    q, qi, s = (torch.randn(64, 16, generator=g) for _ in range(3))
    ent, ei = torch.randn(3001, 16, generator=g), torch.randn(3001, 16, generator=g)
    with torch.inference_mode():
        split = (l1_distance_all(q, ent), l1_distance_all(q, ent, s), modulus_distance_all(q, qi, ent, ei))
        monkeypatch.setattr(model, "split_run", inline)
        one = (l1_distance_all(q, ent), l1_distance_all(q, ent, s), modulus_distance_all(q, qi, ent, ei))
    for a, b in zip(split, one):
        assert torch.equal(a, b)


def test_workers_see_the_callers_grad_and_inference_mode(two_threads):
    def modes(lo, hi):
        return torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.get_num_threads()
    with torch.no_grad():
        assert set(parallel.split_run(100, modes)) == {(False, False, 1)}
    with torch.inference_mode():
        assert set(parallel.split_run(100, modes)) == {(False, True, 1)}
    assert set(parallel.split_run(100, modes)) == {(True, False, 1)}
    assert torch.get_num_threads() == 2          # the caller's own thread count is untouched


def test_one_thread_and_nested_calls_run_inline(two_threads):
    nested = parallel.split_run(100, lambda lo, hi: parallel.split_run(hi - lo, lambda a, b: (a, b)))
    assert nested == [[(0, 50)], [(0, 50)]]               # a worker's own split runs as one part
    torch.set_num_threads(1)
    assert parallel.split_run(100, lambda lo, hi: (lo, hi)) == [(0, 100)]


@pytest.mark.parametrize("user,torch_first,expected", [(None, False, "PASSIVE"), ("ACTIVE", False, "ACTIVE"),
                                                        (None, True, None)])
def test_openmp_wait_policy_is_passive_unless_chosen_or_too_late(user, torch_first, expected):
    """mmkgbench sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP; a user's choice wins, and
    after torch is imported it is left alone (OpenMP has read it already)."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user:
        env["OMP_WAIT_POLICY"] = user
    code = ("import torch; " if torch_first else "") + "import mmkgbench, os; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(expected)
