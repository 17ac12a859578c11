"""Building blocks shared by models: dropout with a fast CPU mask, the masked core contraction, the
TuckER decision layer built from them (the TuckER baseline and MoMoK's four decisions), BCE.

`torch.nn.Dropout` draws its CPU mask with `bernoulli_`, about 10 ns per entry on the 2-core
machine of docs/performance.md: TuckER-style models drop entries of a (B, d, d) core slice per
query (Balažević et al. 2019), 67M entries per decision for MoMoK at B = 1024, d = 256, and the
mask alone took a third of a training step. Here the mask comes from 16-bit uniform integers
drawn by NumPy's PCG64 (about 1 ns per entry), seeded from torch's global generator, so the
harness's per-run seeding (mmkgbench.runner) governs it exactly as it governs `nn.Dropout`. On CUDA
the mask is drawn by torch on the device.

Semantics are those of `nn.Dropout`: in training each entry is zeroed with probability p and the
rest are scaled by 1/(1 - p); in eval mode the input is returned unchanged. The only difference:
on the CPU, p is realised at 16-bit resolution, round(p * 65536) / 65536 (0.4 -> 0.399994).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmkgbench.model import init_
from mmkgbench.parallel import split_run

RESOLUTION = 1 << 16


def linear(n_in: int, n_out: int, generator: torch.Generator, bias: bool = True) -> nn.Linear:
    """nn.Linear with PyTorch's default distribution U(±1/sqrt(n_in)), drawn from `generator`
    (models never draw from the global RNG)."""
    lin = torch.nn.utils.skip_init(nn.Linear, n_in, n_out, bias=bias)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=generator)
        if bias:
            lin.bias.uniform_(-bound, bound, generator=generator)
    return lin


def drop_mask(shape, p: float, device: torch.device | str = "cpu") -> Tensor:
    """bool tensor of `shape`, True where an entry is dropped (probability p, see the module docstring).

    Draws from torch's global generator (one 63-bit seed on the CPU; the mask itself on CUDA).
    """
    device = torch.device(device)
    if device.type != "cpu":
        return torch.rand(shape, device=device) < p
    seed = int(torch.randint(2 ** 62, (1,)))
    n = int(np.prod(shape, dtype=np.int64))
    u = np.random.default_rng(seed).integers(0, RESOLUTION, n, dtype=np.uint16)
    # uint16 has no torch comparison kernel: compare in NumPy (bool result, 1 byte per entry).
    return torch.from_numpy(u < round(p * RESOLUTION)).view(shape)


def keep_mask(shape, p: float, device: torch.device | str = "cpu") -> Tensor:
    """The complement of `drop_mask` from the same draws (the same torch generator state gives
    keep_mask == ~drop_mask): uint8 on the CPU (bool on CUDA), 1 where an entry is kept. Multiplying
    by it is 4-5x faster than `masked_fill_` with a bool mask on the CPU (40 ms against 290 ms for
    67M entries in one thread), and gives the same values (a dropped entry is 0.0 or -0.0)."""
    device = torch.device(device)
    if device.type != "cpu":
        return torch.rand(shape, device=device) >= p
    seed = int(torch.randint(2 ** 62, (1,)))
    n = int(np.prod(shape, dtype=np.int64))
    u = np.random.default_rng(seed).integers(0, RESOLUTION, n, dtype=np.uint16)
    return torch.from_numpy(u >= round(p * RESOLUTION)).view(shape).view(torch.uint8)


class Dropout(nn.Module):
    """`nn.Dropout(p)` with the fast mask of `drop_mask`: x (any shape) -> same shape."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return x.masked_fill(drop_mask(x.shape, self.p, x.device), 0.0) * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _MaskedContraction(torch.autograd.Function):
    """y_b = x_b^T (W[index_b] * keep_b), computed in cache-sized chunks of queries.

    The (B, D, D) per-query matrices are never materialised whole: each chunk is gathered, masked and
    contracted while it sits in cache, and the backward pass gathers it again instead of keeping it
    (1 GiB less for MoMoK's four decisions at B = 1024, D = 256). Gradients flow to x and to W.
    The chunk loop is split across threads by `mmkgbench.parallel.split_run` (queries for y and the
    gradient of x, rows of the D x D matrices for the gradient of W), so that it holds up on a
    shared machine; every number is the one the single-threaded loop computes.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, index: Tensor, keep: Tensor | None, chunk: int) -> Tensor:
        B, d = x.shape
        y = torch.empty_like(x)

        def queries(lo, hi):
            for a in range(lo, hi, chunk):
                sl = slice(a, min(a + chunk, hi))
                wc = w.index_select(0, index[sl])
                if keep is not None:
                    wc.mul_(keep[sl])
                y[sl] = torch.bmm(x[sl, None, :], wc.view(-1, d, d))[:, 0]

        split_run(B, queries, align=chunk, device=x.device)
        ctx.save_for_backward(x, w, index, keep)
        ctx.chunk = chunk
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w, index, keep = ctx.saved_tensors
        B, d = x.shape
        chunk = ctx.chunk
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(w) if ctx.needs_input_grad[1] else None

        def queries(lo, hi):                       # grad_x rows lo:hi
            for a in range(lo, hi, chunk):
                sl = slice(a, min(a + chunk, hi))
                wc = w.index_select(0, index[sl])
                if keep is not None:
                    wc.mul_(keep[sl])
                grad_x[sl] = torch.bmm(wc.view(-1, d, d), g[sl, :, None])[:, :, 0]

        def rows(i0, i1):                          # grad_w columns i0*d:i1*d (rows i0:i1 of each D x D matrix)
            cols = slice(i0 * d, i1 * d)
            target = grad_w[:, cols]
            step = max(1, chunk * d // (i1 - i0))  # as many bytes per chunk as the full-width loop
            for a in range(0, B, step):
                sl = slice(a, a + step)
                outer = (x[sl, i0:i1, None] * g[sl, None, :]).view(-1, (i1 - i0) * d)
                if keep is not None:
                    outer.mul_(keep[sl, cols])
                target.index_add_(0, index[sl], outer)

        if grad_x is not None:
            split_run(B, queries, align=chunk, device=x.device)
        if grad_w is not None:
            split_run(d, rows, device=x.device)
        return grad_x, grad_w, None, None, None


def masked_contraction(x: Tensor, w: Tensor, index: Tensor, mask: Tensor | None = None,
                       chunk_bytes: int = 1 << 21, *, keep: Tensor | None = None) -> Tensor:
    """x (B, D), w (U, D*D) row-major (D, D) matrices, index (B,) into w, mask (B, D*D) bool (True
    where dropped) or keep (B, D*D) uint8/bool (1 where kept, `keep_mask`; faster) or neither
    -> y (B, D), y_b = x_b^T W_{index_b} with dropped entries zeroed (dropout on the matrix, TuckER's
    hidden dropout; scale it beforehand). `chunk_bytes` sizes a chunk of per-query matrices."""
    if mask is not None:
        if keep is not None:
            raise ValueError("give mask or keep, not both")
        keep = (~mask).view(torch.uint8) if mask.device.type == "cpu" else ~mask
    B, d = x.shape
    if w.shape[1] != d * d:
        raise ValueError(f"w has rows of {w.shape[1]} entries, expected D*D = {d * d}")
    chunk = max(1, chunk_bytes // (d * d * w.element_size()))
    # Under CUDA autocast x and w may differ in dtype: run in the wider one, autocast off inside.
    dtype = torch.promote_types(x.dtype, w.dtype)
    with torch.autocast(x.device.type, enabled=False):
        return _MaskedContraction.apply(x.to(dtype), w.to(dtype), index, keep, chunk)


class TuckERDecision(nn.Module):
    """TuckER's decision layer (Balažević et al., EMNLP 2019, "TuckER: Tensor Factorization for Knowledge
    Graph Completion"): the query vector y of f(h, r, t) = (W ×₁ w_r ×₂ e_h) · e_t = y · e_t.

    e (B, D) query entities, r (B, D_r) their relation vectors -> y (B, D); scores are y @ E^T, (B, E),
    higher is better. With the core W of shape (D_r, D, D), per query b:

        x = Drop_in(BN0(e_b)),   W_b = Drop_hidden(reshape(r_b W) to (D, D)),   y_b = Drop_out(BN1(x W_b)),

    the recipe of TuckER's code, which MoMoK's code (layers/layer.py) reuses for each of its decisions.
    The hidden dropout draws a fresh (D, D) mask for every query, as both codes do; the masks come from
    `drop_mask` (p at 16-bit resolution on the CPU, see the module docstring), and the masked
    contraction runs in cache-sized chunks (`masked_contraction`), so no (B, D, D) tensor is built.
    BN0 and BN1 are BatchNorm1d(D): in train mode y depends on the batch, in eval mode they are a
    fixed affine map and the dropouts are the identity.

    core_init: "uniform" is U(-1, 1), as TuckER's code; "xavier_uniform" is MoMoK's code. The core is
    drawn from `generator` when the layer is built, so where it is built in a model's __init__ fixes
    which draws it gets.
    """

    CORE_INITS = ("uniform", "xavier_uniform")

    def __init__(self, dim: int, rel_dim: int, *, input_dropout: float, hidden_dropout: float,
                 output_dropout: float, core_init: str, generator: torch.Generator):
        super().__init__()
        for name, p in (("input_dropout", input_dropout), ("hidden_dropout", hidden_dropout),
                        ("output_dropout", output_dropout)):
            if not 0 <= p < 1:
                raise ValueError(f"TuckER decision: {name} must be in [0, 1), got {p}")
        if core_init not in self.CORE_INITS:
            raise ValueError(f"TuckER decision: core_init must be one of {list(self.CORE_INITS)}, got {core_init!r}")
        self.core = nn.Parameter(torch.empty(rel_dim, dim, dim))
        if core_init == "uniform":
            init_(self.core, "uniform", generator, a=-1.0, b=1.0)
        else:
            init_(self.core, "xavier_uniform", generator)
        self.bn0, self.bn1 = nn.BatchNorm1d(dim), nn.BatchNorm1d(dim)
        self.input_dropout, self.output_dropout = Dropout(input_dropout), Dropout(output_dropout)
        self.hidden_dropout = hidden_dropout

    def forward(self, e: Tensor, r: Tensor, index: Tensor | None = None) -> Tensor:
        """e (B, D); r (B, D_r), or with `index` (B,) the (U, D_r) vectors of the distinct relations the
        queries use (query b has relation r[index[b]]): then r W is computed U times instead of B (about
        200 vs 1,024 in a DB15K batch), the same numbers for a fraction of the core's flops."""
        rel_dim, d = self.core.shape[:2]
        if e.dim() != 2 or e.shape[1] != d or r.dim() != 2 or r.shape[1] != rel_dim:
            raise ValueError(f"TuckER decision: expected e (B, {d}) and r (*, {rel_dim}), "
                             f"got {tuple(e.shape)} and {tuple(r.shape)}")
        if len(e) != (len(r) if index is None else len(index)):
            raise ValueError(f"TuckER decision: {len(e)} query entities but "
                             f"{len(r) if index is None else len(index)} relations (or index entries)")
        x = self.input_dropout(self.bn0(e))
        # The dropout's 1/(1 - p) is folded into r (a few KB); the per-query mask is applied chunk by
        # chunk inside the contraction, so no (B, D, D) tensor is ever built (docs/performance.md).
        dropping = self.training and self.hidden_dropout > 0
        w = (r / (1.0 - self.hidden_dropout) if dropping else r) @ self.core.reshape(rel_dim, -1)
        if index is None:
            index = torch.arange(len(w), device=w.device)
        keep = keep_mask((len(index), d * d), self.hidden_dropout, w.device) if dropping else None
        return self.output_dropout(self.bn1(masked_contraction(x, w, index, keep=keep)))

    def extra_repr(self) -> str:
        return f"hidden_dropout={self.hidden_dropout}"

class _BCEWithLogitsMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s: Tensor, y: Tensor) -> Tensor:
        ctx.save_for_backward(s, y)
        # softplus(s) - y s = -[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))]; softplus returns s
        # above 20, where log1p(e^-s) < 2.1e-9 is below float32's resolution there.
        return (F.softplus(s).sum() - torch.dot(s.reshape(-1), y.reshape(-1))) / s.numel()

    @staticmethod
    def backward(ctx, g: Tensor):
        s, y = ctx.saved_tensors
        return torch.sigmoid(s).sub_(y).mul_(g / s.numel()), None


def bce_with_logits_mean(s: Tensor, y: Tensor) -> Tensor:
    """Mean binary cross-entropy of logits s against targets y, both (B, E): the value of
    `F.binary_cross_entropy_with_logits(s, y)` in two passes over s instead of five, and a backward
    pass of one fused expression (tested against it)."""
    if s.shape != y.shape:
        raise ValueError(f"logits {tuple(s.shape)} and targets {tuple(y.shape)} differ in shape")
    return _BCEWithLogitsMean.apply(s, y)


def mean_probability_logit(logits) -> Tensor:
    """The logit of the mean decision probability, logit(P) with P = mean_m sigmoid(s_m), for a list of
    decisions' logits s_m, each (B, E) -> (B, E): the test-time score of MoMoK and IMF (their code averages
    the sigmoids of their decisions).

    logit(P) = log P - log(1 - P) = LSE_m logsigmoid(s_m) - LSE_m logsigmoid(-s_m): the first term keeps
    the precision where P is small, the second where P is near 1, so candidates whose probabilities round
    to the same float32 still get distinct scores (no artificial ties).
    """
    s = torch.stack([v.float() for v in logits])
    return torch.logsumexp(F.logsigmoid(s), 0) - torch.logsumexp(F.logsigmoid(-s), 0)


def kvsall_cross_entropy(s: Tensor, y: Tensor) -> Tensor:
    """-mean_b sum_e (y_be / sum_e y_be) log softmax(s_b)_e: scores s (B, E) against KvsAll targets y
    (B, E), each row normalised to a distribution over its answers (the training loop's `loss = "ce"`)."""
    return -(y / y.sum(1, keepdim=True) * torch.log_softmax(s, dim=1)).sum(1).mean()
