"""mmkgbench.transport.sinkhorn: marginals, the exact OT limit, a plain-kernel reference, underflow."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog
from torch.testing import assert_close

from mmkgbench.transport import sinkhorn


def costs(n, a, b, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, a, b, generator=g, dtype=dtype)


def exact_ot(c: np.ndarray) -> float:
    """min <P, C> over plans with uniform marginals, as a linear program."""
    a, b = c.shape
    rows = np.kron(np.eye(a), np.ones((1, b)))            # sum_j P_ij = 1/a
    cols = np.kron(np.ones((1, a)), np.eye(b))            # sum_i P_ij = 1/b
    res = linprog(c.reshape(-1), A_eq=np.vstack([rows, cols]),
                  b_eq=np.concatenate([np.full(a, 1 / a), np.full(b, 1 / b)]), bounds=(0, None), method="highs")
    assert res.success
    return float(res.fun)


def naive_sinkhorn(c: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Cuturi's u, v scaling against K = exp(-C / eps), one problem, float64."""
    a, b = c.shape
    k = torch.exp(-c / eps)
    u, v = torch.full((a,), 1.0 / a, dtype=c.dtype), torch.full((b,), 1.0 / b, dtype=c.dtype)
    for _ in range(iters):
        v = (1.0 / b) / (k.t() @ u)
        u = (1.0 / a) / (k @ v)
    return u[:, None] * k * v[None, :]


def test_marginals_are_met():
    c = costs(3, 5, 7)
    p = sinkhorn(c, 0.05, tol=1e-14)
    assert p.shape == (3, 5, 7) and (p >= 0).all()
    assert_close(p.sum(2), torch.full((3, 5), 1 / 5, dtype=torch.float64))
    assert_close(p.sum(1), torch.full((3, 7), 1 / 7, dtype=torch.float64), atol=1e-7, rtol=0)


def test_small_epsilon_approaches_the_exact_transport_cost():
    c = costs(2, 4, 6, seed=1)
    for i in range(2):
        exact = exact_ot(c[i].numpy())
        gaps = [float((sinkhorn(c[i:i + 1], eps, max_iter=20000, tol=1e-16) * c[i]).sum()) - exact
                for eps in (0.1, 0.01, 0.001)]
        # the entropic plan's cost is above the exact one and tends to it as eps -> 0 (a plan that meets
        # the marginals only to tol may land a hair below)
        assert gaps[0] > 1e-3 and abs(gaps[2]) < 1e-4, gaps


def test_agrees_with_the_plain_kernel_sinkhorn():
    c = costs(2, 6, 5, seed=2)
    for iters in (1, 7, 200):
        p = sinkhorn(c, 0.5, max_iter=iters, tol=0.0)
        for i in range(2):
            assert_close(p[i], naive_sinkhorn(c[i], 0.5, iters), atol=1e-12, rtol=1e-9)
    # it stops early once the column marginal error is below tol, checked every check_every iterations
    early = sinkhorn(c, 0.5, tol=1e-9)
    assert ((early.sum(1) - 1 / 5) ** 2).sum(1).max() < 1e-9


def test_no_underflow_in_float32():
    # a constant added to the cost leaves the plan unchanged, but at C / eps >= 150 the float32 kernel
    # exp(-C / eps) is all zeros, so the plain scaling divides 0 by 0
    base = costs(2, 8, 9, seed=3) * 5.0
    c = (base + 150.0).float()
    assert (torch.exp(-c) == 0).all()
    assert torch.isnan(naive_sinkhorn(c[0], 1.0, 5)).any()
    p = sinkhorn(c, 1.0)
    assert torch.isfinite(p).all() and p.dtype == torch.float32
    assert_close(p.double(), sinkhorn(base, 1.0), atol=1e-6, rtol=1e-4)
    assert_close(p.sum(1), torch.full((2, 9), 1 / 9), atol=1e-5, rtol=0)
