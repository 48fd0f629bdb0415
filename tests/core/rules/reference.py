"""Slow, independent LRP references in explicit matrix form (float64).

A layer is turned into its explicit matrix ``M`` (out_numel x in_numel) by applying its forward to
each basis vector -- convolutions are unfolded this way, whatever their stride, padding, dilation
or groups -- and every rule is then written with explicit sums over ``j`` (inputs) and ``k``
(outputs), one sample at a time. Nothing here calls seqlrp.
"""

from __future__ import annotations

import torch


def explicit_matrix(fn, in_shape):
    """Jacobian of the linear map ``fn`` (bias-free) as a (out_numel, in_numel) matrix, by basis vectors."""
    n = int(torch.tensor(in_shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    columns = fn(basis).reshape(n, -1)  # column j = fn(e_j)
    return columns.T.contiguous()


def sign0(z):
    return torch.where(z >= 0, 1.0, -1.0).double()


def stab(z, eps):
    return z + eps * sign0(z)


def _div(num, den):
    return torch.where(den == 0, torch.zeros_like(num), num / torch.where(den == 0, 1.0, den))


def lrp_matrix(rule, M, a, b, R, conn=None, low=None, high=None, **p):
    """Relevance of the inputs ``a`` (in_numel,) of ``z = M a + b`` for output relevance ``R`` (out_numel,).

    ``conn`` is the 0/1 connectivity (out, in) (for bias_factor and flat). Loops spelled out in matrix form.
    """
    eps = p.get("epsilon", 1e-6)
    ignore_bias = p.get("ignore_bias", False)
    bias = torch.zeros(M.shape[0], dtype=torch.float64) if (b is None or ignore_bias) else b
    C = M * a[None, :]  # C[k, j] = a_j w_jk
    if rule in ("epsilon", "zero"):
        z = C.sum(1) + bias
        den = stab(z, eps)
        bf = p.get("bias_factor", 0.0)
        N = conn.sum(1)
        share = bf * (bias + eps * sign0(z)) / N  # per output k, to each connected input
        num = C + share[:, None] * conn
        return (_div(R, den)[:, None] * num).sum(0)
    if rule == "gamma":
        g = p["gamma"]
        z = C.sum(1) + bias
        s = sign0(z)
        Cm = torch.where(s[:, None] > 0, C + g * C.clamp(min=0), C + g * C.clamp(max=0))
        bm = torch.where(s > 0, bias + g * bias.clamp(min=0), bias + g * bias.clamp(max=0))
        den = stab(Cm.sum(1) + bm, eps)
        return (_div(R, den)[:, None] * Cm).sum(0)
    if rule in ("alpha_beta", "zplus"):
        alpha, beta = (1.0, 0.0) if rule == "zplus" else (p["alpha"], p["beta"])
        Cp, Cn = C.clamp(min=0), C.clamp(max=0)
        dp = stab(Cp.sum(1) + bias.clamp(min=0), eps)
        dn = stab(Cn.sum(1) + bias.clamp(max=0), eps)
        return alpha * (_div(R, dp)[:, None] * Cp).sum(0) - beta * (_div(R, dn)[:, None] * Cn).sum(0)
    if rule == "zbox":
        bias = torch.zeros_like(bias) if (p.get("ignore_bias", True) or b is None) else b
        Cz = C - M.clamp(min=0) * low[None, :] - M.clamp(max=0) * high[None, :]
        den = stab(Cz.sum(1) + bias, eps)
        return (_div(R, den)[:, None] * Cz).sum(0)
    if rule == "wsquare":
        W2 = M**2
        den = stab(W2.sum(1) + (bias**2), eps)
        return (_div(R, den)[:, None] * W2).sum(0)
    if rule == "flat":
        use_bias = not p.get("ignore_bias", True) and b is not None
        den = stab(conn.sum(1) + (1.0 if use_bias else 0.0), eps)
        return (_div(R, den)[:, None] * conn).sum(0)
    raise ValueError(rule)
