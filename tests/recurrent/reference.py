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


@torch.no_grad()
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


def causal_conv(x, conv):
    """Depthwise causal conv by its taps: ``c[t, d] = Σ_j w[d, j] x[t−K+1+j, d] + b[d]``."""
    w, k = conv.weight[:, 0, :], conv.weight.shape[-1]
    c = torch.zeros_like(x)
    for t in range(x.shape[1]):
        for j in range(k):
            if t - k + 1 + j >= 0:
                c[:, t] += w[:, j] * x[:, t - k + 1 + j]
    return c if conv.bias is None else c + conv.bias


def causal_conv_relevance(x, conv, c, relevance, eps):
    """ε over each output's K taps (the bias absorbs its share)."""
    w, k = conv.weight[:, 0, :], conv.weight.shape[-1]
    q = relevance / stab(c, eps)
    r = torch.zeros_like(x)
    for t in range(x.shape[1]):
        for j in range(k):
            if t - k + 1 + j >= 0:
                r[:, t - k + 1 + j] += x[:, t - k + 1 + j] * w[:, j] * q[:, t]
    return r


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def recurrence_relevance(states, decay, drive, relevance, eps):
    """h_t = a_t h_{t−1} + d_t backwards: ε over the two summands, the decay a gate; returns R of each d_t."""
    r_state = [r.clone() for r in relevance]
    r_drive = [None] * len(states)
    for t in range(len(states) - 1, 0, -1):
        q = r_state[t] / stab(states[t], eps)
        r_state[t - 1] = r_state[t - 1] + decay[t] * states[t - 1] * q
        r_drive[t] = drive[t] * q
    r_drive[0] = r_state[0]
    return r_drive


@torch.no_grad()
def recurrent_gemma_reference(model, x, target, eps):
    """LRP (RecurrentLRP, half rule) of ``model.head(model.backbone(inputs_embeds=x).last_hidden_state[:, -1])``."""
    backbone, head = model.backbone, model.head
    batch, steps, _ = x.shape

    def norm(module, h):
        return (1 + module.weight) * h / rms(h, module.eps)

    def norm_relevance(module, h, out, r):
        return h * (1 + module.weight) / rms(h, module.eps) * r / stab(out, eps)

    h = x.detach().double() * backbone.normalizer.to(torch.float64)
    h_in, tape = h, []
    for layer in backbone.layers:
        blk, lru, mlp = layer.temporal_block, layer.temporal_block.rg_lru, layer.mlp_block
        res0 = h
        n1 = norm(layer.temporal_pre_norm, h)
        ypre = n1 @ blk.linear_y.weight.T + blk.linear_y.bias
        yb = gelu_tanh(ypre)
        xb = n1 @ blk.linear_x.weight.T + blk.linear_x.bias
        c = causal_conv(xb, blk.conv_1d)
        heads, width = lru.num_attention_heads, lru.block_width
        i_gate, r_gate = torch.zeros_like(c), torch.zeros_like(c)
        for hd in range(heads):
            cols = slice(hd * width, (hd + 1) * width)
            block = c[..., cols]
            i_gate[..., cols] = torch.sigmoid(block @ lru.input_gate_weight[hd] + lru.input_gate_bias[hd])
            r_gate[..., cols] = torch.sigmoid(block @ lru.recurrent_gate_weight[hd] + lru.recurrent_gate_bias[hd])
        a = torch.exp(-8.0 * r_gate * F.softplus(lru.recurrent_param))
        decay, drive, states = [], [], []
        for t in range(steps):
            scale = i_gate[:, t] if t == 0 else torch.sqrt(1 - a[:, t] ** 2) * i_gate[:, t]
            decay.append(torch.zeros_like(a[:, t]) if t == 0 else a[:, t])
            drive.append(scale * c[:, t])
            states.append(drive[t] if t == 0 else decay[t] * states[t - 1] + drive[t])
        st = torch.stack(states, 1)
        o = st * yb
        out = o @ blk.linear_out.weight.T + blk.linear_out.bias
        r1 = out + res0
        n2 = norm(layer.channel_pre_norm, r1)
        g = gelu_tanh(n2 @ mlp.gate_proj.weight.T + mlp.gate_proj.bias)
        up = n2 @ mlp.up_proj.weight.T + mlp.up_proj.bias
        p = g * up
        down = p @ mlp.down_proj.weight.T + mlp.down_proj.bias
        tape.append(dict(res0=res0, n1=n1, yb=yb, xb=xb, c=c, st=st, states=states, decay=decay, drive=drive,
                         o=o, out=out, r1=r1, n2=n2, g=g, up=up, p=p, down=down))
        h = down + r1
    hf = norm(backbone.final_norm, h)
    logits = hf[:, -1] @ head.weight.T + head.bias
    seed = torch.zeros_like(logits)
    seed[torch.arange(batch), target] = logits[torch.arange(batch), target]
    r_hf = torch.zeros_like(hf)
    r_hf[:, -1] = eps_linear(hf[:, -1], head.weight, head.bias, seed, eps)
    r = norm_relevance(backbone.final_norm, h, hf, r_hf)
    for layer, s in zip(reversed(backbone.layers), reversed(tape), strict=True):
        blk, mlp = layer.temporal_block, layer.mlp_block
        total = s["down"] + s["r1"]
        r_down, r_r1 = s["down"] * r / stab(total, eps), s["r1"] * r / stab(total, eps)
        r_p = eps_linear(s["p"], mlp.down_proj.weight, mlp.down_proj.bias, r_down, eps)
        r_half = 0.5 * s["p"] * r_p / stab(s["p"], eps)
        r_n2 = (eps_linear(s["n2"], mlp.gate_proj.weight, mlp.gate_proj.bias, r_half, eps)
                + eps_linear(s["n2"], mlp.up_proj.weight, mlp.up_proj.bias, r_half, eps))
        r_r1 = r_r1 + norm_relevance(layer.channel_pre_norm, s["r1"], s["n2"], r_n2)
        r_out, r_res0 = s["out"] * r_r1 / stab(s["r1"], eps), s["res0"] * r_r1 / stab(s["r1"], eps)
        r_o = eps_linear(s["o"], blk.linear_out.weight, blk.linear_out.bias, r_out, eps)
        r_half = 0.5 * s["o"] * r_o / stab(s["o"], eps)
        r_drive = recurrence_relevance(s["states"], s["decay"], s["drive"], list(r_half.unbind(1)), eps)
        r_c = torch.stack(r_drive, 1)  # (the scale is a gate: the drive's relevance is the conv output's)
        r_xb = causal_conv_relevance(s["xb"], blk.conv_1d, s["c"], r_c, eps)
        r_n1 = (eps_linear(s["n1"], blk.linear_x.weight, blk.linear_x.bias, r_xb, eps)
                + eps_linear(s["n1"], blk.linear_y.weight, blk.linear_y.bias, r_half, eps))
        r = r_res0 + norm_relevance(layer.temporal_pre_norm, s["res0"], s["n1"], r_n1)
    c0 = backbone.normalizer.to(torch.float64)
    return x * c0 * r / stab(h_in, eps), logits
