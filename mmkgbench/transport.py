"""Entropic optimal transport: Sinkhorn's algorithm (Cuturi, NeurIPS 2013, "Sinkhorn Distances:
Lightspeed Computation of Optimal Transport") in the log domain, for batches of cost matrices.

Plain Sinkhorn scales u, v against the kernel K = exp(-C / eps), which underflows to 0 in float32
once C / eps exceeds about 100 (then u = a / (K v) is 0 / 0). Here the scalings are kept as logs and
every update is a logsumexp, so any eps > 0 works. Pure torch: runs on the device of `cost`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def sinkhorn(cost: Tensor, epsilon: float, *, max_iter: int = 1000, tol: float = 1e-9,
             check_every: int = 10) -> Tensor:
    """Entropic OT plans between uniform marginals: cost (n, a, b) -> plans P (n, a, b), each
    argmin_P <P, C> - eps H(P) with rows summing to 1/a and columns to 1/b.

    Iterates log v = log(1/b) - LSE_i(log u_i - C_ij / eps), log u = log(1/a) - LSE_j(log v_j - C_ij / eps)
    (the u, v scalings of Cuturi 2013 from u = 1/a, as in POT's `sinkhorn_knopp`), so P = u K v. Every
    `check_every` iterations the squared error of the column marginal, sum_j (1/b - sum_i P_ij)^2, is
    checked and the loop stops once it is below `tol` for every problem of the batch (the rows are
    exact after each u update). No gradient is tracked: call it under torch.no_grad()."""
    log_u, log_v, _ = sinkhorn_scalings(cost, epsilon, max_iter=max_iter, tol=tol, check_every=check_every)
    return plan_of(cost, epsilon, log_u, log_v)


def sinkhorn_scalings(cost: Tensor, epsilon: float, *, log_u: Tensor | None = None, max_iter: int = 1000,
                      tol: float = 1e-9, check_every: int = 10) -> tuple[Tensor, Tensor, int]:
    """The iterations of `sinkhorn`, returning the log scalings log u (n, a, 1), log v (n, 1, b) and the
    number of iterations run. log_u: a start (warm start from a previous, nearby problem: the same fixed
    point, reached in fewer iterations); None starts from u = 1/a."""
    n, a, b = cost.shape
    with torch.no_grad():
        log_k = cost / -epsilon                                        # (n, a, b)
        log_a, log_b = -math.log(a), -math.log(b)
        if log_u is None or log_u.shape != (n, a, 1):
            log_u = torch.full((n, a, 1), log_a, dtype=cost.dtype, device=cost.device)
        log_u = log_u.to(cost.dtype)
        it = 0
        for it in range(1, max_iter + 1):
            log_v = log_b - torch.logsumexp(log_k + log_u, dim=1, keepdim=True)      # (n, 1, b)
            log_u = log_a - torch.logsumexp(log_k + log_v, dim=2, keepdim=True)      # (n, a, 1)
            if (it - 1) % check_every == 0:
                cols = torch.logsumexp(log_k + log_u, dim=1, keepdim=True).add_(log_v).exp_()
                if float((cols - 1.0 / b).square().sum((1, 2)).max()) < tol:
                    break
        return log_u, log_v, it


def plan_of(cost: Tensor, epsilon: float, log_u: Tensor, log_v: Tensor) -> Tensor:
    """P = diag(u) K diag(v) from log scalings: (n, a, b)."""
    with torch.no_grad():
        return (log_u + cost / -epsilon + log_v).exp()
