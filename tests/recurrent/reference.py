"""Slow float64 references: the recurrent families' LRP rules applied by hand, step by step.

Independent of seqlrp's mechanism: the forward is recomputed from the model's weights with explicit loops over
time and the convolution taps, and each rule's formula (docs/recurrent.md) is applied by hand in reverse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stab(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def eps_linear(x, weight, bias, relevance, eps):
    """R_j = sum_k x_j w_kj R_k / stab(z_k), z = x W^T + b."""
    z = x @ weight.T + (0 if bias is None else bias)
    return x * ((relevance / stab(z, eps)) @ weight)


def rms(x, eps):
    return torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def mamba_reference(model, x, target, eps, output_gate="half_product"):
    """LRP of ``model.head(model.backbone(inputs_embeds=x).last_hidden_state[:, -1])`` for ``target``."""
    backbone, head = model.backbone, model.head
    h = x.detach().double()
    batch, steps, _ = h.shape
    tape = []
    for block in backbone.layers:
        m = block.mixer
        res = h
        n = block.norm.weight * h / rms(h, block.norm.variance_epsilon)
        xz = n @ m.in_proj.weight.T + (0 if m.in_proj.bias is None else m.in_proj.bias)
        xs, z = xz.chunk(2, -1)
        k = m.conv1d.weight.shape[-1]
        w = m.conv1d.weight[:, 0, :]  # (D, K)
        c = torch.zeros_like(xs)
        for t in range(steps):
            for j in range(k):
                src = t - k + 1 + j
                if src >= 0:
                    c[:, t] += w[:, j] * xs[:, src]
        if m.conv1d.bias is not None:
            c = c + m.conv1d.bias
        u = F.silu(c)
        nstate, rank = m.ssm_state_size, m.time_step_rank
        p = u @ m.x_proj.weight.T
        dt = F.softplus(p[..., :rank] @ m.dt_proj.weight.T + m.dt_proj.bias)
        bmat, cmat = p[..., rank:rank + nstate], p[..., rank + nstate:]
        a = -torch.exp(m.A_log)
        states = []
        for t in range(steps):
            abar = torch.exp(dt[:, t, :, None] * a)
            drive = dt[:, t, :, None] * bmat[:, t, None, :] * u[:, t, :, None]
            states.append(drive if t == 0 else abar * states[-1] + drive)
        y = torch.stack([(states[t] * cmat[:, t, None, :]).sum(-1) for t in range(steps)], 1)
        skip = m.D * u
        y2 = y + skip
        g = F.silu(z)
        o = y2 * g
        out = o @ m.out_proj.weight.T + (0 if m.out_proj.bias is None else m.out_proj.bias)
        tape.append(dict(res=res, n=n, xs=xs, c=c, u=u, dt=dt, b=bmat, cm=cmat, a=a, states=states, y=y,
                         skip=skip, y2=y2, o=o, out=out, w=w, k=k))
        h = res + out
    hf = backbone.norm_f.weight * h / rms(h, backbone.norm_f.variance_epsilon)
    logits = hf[:, -1] @ head.weight.T + (0 if head.bias is None else head.bias)
    seed = torch.zeros_like(logits)
    seed[torch.arange(batch), target] = logits[torch.arange(batch), target]
    r_hf = torch.zeros_like(hf)
    r_hf[:, -1] = eps_linear(hf[:, -1], head.weight, head.bias, seed, eps)
    r = hf * r_hf / stab(hf, eps)  # RMSNorm: identity (rms held constant)
    for block, s in zip(reversed(backbone.layers), reversed(tape), strict=True):
        m = block.mixer
        total = s["res"] + s["out"]
        r_res = s["res"] * r / stab(total, eps)
        r_out = s["out"] * r / stab(total, eps)
        r_o = eps_linear(s["o"], m.out_proj.weight, m.out_proj.bias, r_out, eps)
        if output_gate == "half_product":
            r_y2 = r_z = 0.5 * s["o"] * r_o / stab(s["o"], eps)
        else:
            r_y2, r_z = r_o, torch.zeros_like(r_o)
        r_y = s["y"] * r_y2 / stab(s["y2"], eps)
        r_u = s["skip"] * r_y2 / stab(s["y2"], eps)
        states = s["states"]
        r_state = [states[t] * s["cm"][:, t, None, :] * (r_y[:, t] / stab(s["y"][:, t], eps))[..., None]
                   for t in range(steps)]
        for t in range(steps - 1, 0, -1):
            abar = torch.exp(s["dt"][:, t, :, None] * s["a"])
            drive = s["dt"][:, t, :, None] * s["b"][:, t, None, :] * s["u"][:, t, :, None]
            q = r_state[t] / stab(states[t], eps)
            r_state[t - 1] = r_state[t - 1] + abar * states[t - 1] * q
            r_u[:, t] += (drive * q).sum(-1)
        r_u[:, 0] += r_state[0].sum(-1)
        r_c = r_u  # SiLU: pass
        q = r_c / stab(s["c"], eps)
        r_xs = torch.zeros_like(s["xs"])
        for t in range(steps):
            for j in range(s["k"]):
                src = t - s["k"] + 1 + j
                if src >= 0:
                    r_xs[:, src] += s["xs"][:, src] * s["w"][:, j] * q[:, t]
        r_n = eps_linear(s["n"], m.in_proj.weight, m.in_proj.bias, torch.cat([r_xs, r_z], -1), eps)
        scale = block.norm.weight / rms(s["res"], block.norm.variance_epsilon)
        r = r_res + s["res"] * scale * r_n / stab(s["n"], eps)
    return r, logits
