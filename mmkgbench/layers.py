"""Building blocks shared by models: dropout with a fast CPU mask, the masked core contraction, BCE.

`torch.nn.Dropout` draws its CPU mask with `bernoulli_`, about 10 ns per entry on the 2-core
machine of docs/performance.md: TuckER-style models drop entries of a (B, d, d) core slice per
query (Balažević et al. 2019), 67M entries per decision for MoMoK at B = 1024, d = 256, and the
mask alone took a third of a training step. Here the mask comes from 16-bit uniform integers
drawn by NumPy's PCG64 (about 1 ns per entry), seeded from torch's global generator, so the
harness's per-run seeding (mmkgbench.run) governs it exactly as it governs `nn.Dropout`. On CUDA
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
    """y_b = x_b^T (W[index_b] with the entries of mask_b zeroed), computed in cache-sized chunks of queries.

    The (B, D, D) per-query matrices are never materialised whole: each chunk is gathered, masked and
    contracted while it sits in cache, and the backward pass gathers it again instead of keeping it
    (1 GiB less for MoMoK's four decisions at B = 1024, D = 256). Gradients flow to x and to W.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, index: Tensor, mask: Tensor | None, chunk: int) -> Tensor:
        B, d = x.shape
        y = torch.empty_like(x)
        for lo in range(0, B, chunk):
            sl = slice(lo, lo + chunk)
            wc = w.index_select(0, index[sl])
            if mask is not None:
                wc.masked_fill_(mask[sl], 0.0)
            y[sl] = torch.bmm(x[sl, None, :], wc.view(-1, d, d))[:, 0]
        ctx.save_for_backward(x, w, index, mask)
        ctx.chunk = chunk
        return y

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w, index, mask = ctx.saved_tensors
        B, d = x.shape
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(w) if ctx.needs_input_grad[1] else None
        for lo in range(0, B, ctx.chunk):
            sl = slice(lo, lo + ctx.chunk)
            if grad_x is not None:
                wc = w.index_select(0, index[sl])
                if mask is not None:
                    wc.masked_fill_(mask[sl], 0.0)
                grad_x[sl] = torch.bmm(wc.view(-1, d, d), g[sl, :, None])[:, :, 0]
            if grad_w is not None:
                outer = (x[sl, :, None] * g[sl, None, :]).view(-1, d * d)
                if mask is not None:
                    outer.masked_fill_(mask[sl], 0.0)
                grad_w.index_add_(0, index[sl], outer)
        return grad_x, grad_w, None, None, None


def masked_contraction(x: Tensor, w: Tensor, index: Tensor, mask: Tensor | None = None,
                       chunk_bytes: int = 1 << 21) -> Tensor:
    """x (B, D), w (U, D*D) row-major (D, D) matrices, index (B,) into w, mask (B, D*D) bool or None
    -> y (B, D), y_b = x_b^T W_{index_b} with masked entries zeroed (dropout on the matrix, TuckER's
    hidden dropout; scale it beforehand). `chunk_bytes` sizes a chunk of per-query matrices."""
    B, d = x.shape
    if w.shape[1] != d * d:
        raise ValueError(f"w has rows of {w.shape[1]} entries, expected D*D = {d * d}")
    chunk = max(1, chunk_bytes // (d * d * w.element_size()))
    # Under CUDA autocast x and w may differ in dtype: run in the wider one, autocast off inside.
    dtype = torch.promote_types(x.dtype, w.dtype)
    with torch.autocast(x.device.type, enabled=False):
        return _MaskedContraction.apply(x.to(dtype), w.to(dtype), index, mask, chunk)


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
