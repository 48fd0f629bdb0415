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


def split_product(product, relevance, rule, eps):
    """``act(a) ⊙ b``: (R_a, R_b) by the half rule or signal-takes-all (``b`` the signal)."""
    if rule == "half_product":
        half = 0.5 * product * relevance / stab(product, eps)
        return half, half
    return torch.zeros_like(relevance), relevance


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
def recurrent_gemma_reference(model, x, target, eps, output_gate="half_product"):
    """LRP (RecurrentLRP) of ``model.head(model.backbone(inputs_embeds=x).last_hidden_state[:, -1])``."""
    backbone, head = model.backbone, model.head
    batch, steps, _ = x.shape

    def norm(module, h):
        return (1 + module.weight) * h / rms(h, module.eps)

    def norm_relevance(module, h, out, r):
        return h * (1 + module.weight) / rms(h, module.eps) * r / stab(out, eps)

    h = x.detach().double() * backbone.normalizer.to(torch.float64)
    tape = []
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
        r_gate, r_up = split_product(s["p"], r_p, output_gate, eps)
        r_n2 = (eps_linear(s["n2"], mlp.gate_proj.weight, mlp.gate_proj.bias, r_gate, eps)
                + eps_linear(s["n2"], mlp.up_proj.weight, mlp.up_proj.bias, r_up, eps))
        r_r1 = r_r1 + norm_relevance(layer.channel_pre_norm, s["r1"], s["n2"], r_n2)
        r_out, r_res0 = s["out"] * r_r1 / stab(s["r1"], eps), s["res0"] * r_r1 / stab(s["r1"], eps)
        r_o = eps_linear(s["o"], blk.linear_out.weight, blk.linear_out.bias, r_out, eps)
        r_y, r_states = split_product(s["o"], r_o, output_gate, eps)
        r_drive = recurrence_relevance(s["states"], s["decay"], s["drive"], list(r_states.unbind(1)), eps)
        r_c = torch.stack(r_drive, 1)  # (the scale is a gate: the drive's relevance is the conv output's)
        r_xb = causal_conv_relevance(s["xb"], blk.conv_1d, s["c"], r_c, eps)
        r_n1 = (eps_linear(s["n1"], blk.linear_x.weight, blk.linear_x.bias, r_xb, eps)
                + eps_linear(s["n1"], blk.linear_y.weight, blk.linear_y.bias, r_y, eps))
        r = r_res0 + norm_relevance(layer.temporal_pre_norm, s["res0"], s["n1"], r_n1)
    # the embedding normalizer scales by a constant: relevance passes unchanged (the Rescale rule, R_x = R_y)
    return r, logits


def layer_norm(module, x):
    mu = x.mean(-1, keepdim=True)
    sigma = torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + module.eps)
    return module.weight * (x - mu) / sigma + module.bias


def layer_norm_relevance(module, x, y, relevance, eps):
    """ε on the centring-and-scaling map (σ constant): R_x = x ⊙ Jᵀ (R / stab(y))."""
    mu = x.mean(-1, keepdim=True)
    sigma = torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + module.eps)
    c = module.weight / sigma * relevance / stab(y, eps)
    return x * (c - c.mean(-1, keepdim=True))


def shift(x):
    out = torch.zeros_like(x)
    out[:, 1:] = x[:, :-1]
    return out


def shift_relevance(x, mu, mixed, relevance, eps):
    """ε over ``μ x_t + (1 − μ) x_{t−1}``: both shares go back to x (the second one step earlier)."""
    q = relevance / stab(mixed, eps)
    r = x * mu * q
    r[:, :-1] += (shift(x) * (1 - mu) * q)[:, 1:]
    return r


@torch.no_grad()
def rwkv_reference(model, x, target, eps):
    """LRP (RecurrentLRP) of ``model.head(model.backbone(inputs_embeds=x).last_hidden_state[:, -1])``."""
    backbone, head = model.backbone, model.head
    batch, steps, _ = x.shape
    h, tape = x.double(), []
    for block in backbone.blocks:
        att, ff = block.attention, block.feed_forward
        s = {}
        if block.layer_id == 0:
            s["pre_in"], h = h, layer_norm(block.pre_ln, h)
            s["pre_out"] = h
        s["h"] = h
        a = layer_norm(block.ln1, h)
        s["a"] = a
        mix = {n: a * getattr(att, f"time_mix_{n}") + shift(a) * (1 - getattr(att, f"time_mix_{n}"))
               for n in ("key", "value", "receptance")}
        k, v = mix["key"] @ att.key.weight.T, mix["value"] @ att.value.weight.T
        r = torch.sigmoid(mix["receptance"] @ att.receptance.weight.T)
        w, u = -torch.exp(att.time_decay), att.time_first
        alpha = torch.zeros(batch, steps, steps, k.shape[-1], dtype=x.dtype)
        for t in range(steps):
            logits = torch.stack([(t - 1 - i) * w + k[:, i] if i < t else u + k[:, t] for i in range(t + 1)], 1)
            e = torch.exp(logits - logits.max(1, keepdim=True).values)
            alpha[:, t, :t + 1] = e / e.sum(1, keepdim=True)
        wkv = torch.stack([sum(alpha[:, t, i] * v[:, i] for i in range(t + 1)) for t in range(steps)], 1)
        o = r * wkv
        out = o @ att.output.weight.T
        h1 = h + out
        b = layer_norm(block.ln2, h1)
        km = b * ff.time_mix_key + shift(b) * (1 - ff.time_mix_key)
        rm = b * ff.time_mix_receptance + shift(b) * (1 - ff.time_mix_receptance)
        kk = torch.relu(km @ ff.key.weight.T) ** 2
        val = kk @ ff.value.weight.T
        f = torch.sigmoid(rm @ ff.receptance.weight.T) * val
        s.update(vm=mix["value"], v=v, alpha=alpha, wkv=wkv, o=o, out=out, h1=h1, b=b, km=km, kk=kk, f=f)
        tape.append(s)
        h = h1 + f
    hf = layer_norm(backbone.ln_out, h)
    logits = hf[:, -1] @ head.weight.T + head.bias
    seed = torch.zeros_like(logits)
    seed[torch.arange(batch), target] = logits[torch.arange(batch), target]
    r_hf = torch.zeros_like(hf)
    r_hf[:, -1] = eps_linear(hf[:, -1], head.weight, head.bias, seed, eps)
    rel = layer_norm_relevance(backbone.ln_out, h, hf, r_hf, eps)
    for block, s in zip(reversed(backbone.blocks), reversed(tape), strict=True):
        att, ff = block.attention, block.feed_forward
        total = s["h1"] + s["f"]
        r_h1, r_f = s["h1"] * rel / stab(total, eps), s["f"] * rel / stab(total, eps)
        r_kk = eps_linear(s["kk"], ff.value.weight, None, r_f, eps)  # (receptance: a gate; ReLU²: pass)
        r_km = eps_linear(s["km"], ff.key.weight, None, r_kk, eps)
        r_b = shift_relevance(s["b"], ff.time_mix_key, s["km"], r_km, eps)
        r_h1 = r_h1 + layer_norm_relevance(block.ln2, s["h1"], s["b"], r_b, eps)
        r_h, r_out = s["h"] * r_h1 / stab(s["h1"], eps), s["out"] * r_h1 / stab(s["h1"], eps)
        r_wkv = eps_linear(s["o"], att.output.weight, None, r_out, eps)
        q = r_wkv / stab(s["wkv"], eps)
        r_v = torch.zeros_like(s["v"])
        for t in range(steps):
            for i in range(t + 1):
                r_v[:, i] += s["alpha"][:, t, i] * s["v"][:, i] * q[:, t]
        r_vm = eps_linear(s["vm"], att.value.weight, None, r_v, eps)
        r_a = shift_relevance(s["a"], att.time_mix_value, s["vm"], r_vm, eps)
        rel = r_h + layer_norm_relevance(block.ln1, s["h"], s["a"], r_a, eps)
        if block.layer_id == 0:
            rel = layer_norm_relevance(block.pre_ln, s["pre_in"], s["pre_out"], rel, eps)
    return rel, logits


def rms_norm_relevance(weight, eps_norm, x, y, relevance, eps):
    return x * weight / rms(x, eps_norm) * relevance / stab(y, eps)


@torch.no_grad()
def xlstm_reference(model, x, target, eps):
    """LRP (RecurrentLRP) of ``model.head(model.backbone(inputs_embeds=x).last_hidden_state[:, -1])``: the mLSTM
    recurrence run step by step with its stabilized exponential gates; v the signal, the rest gates."""
    backbone, head = model.backbone, model.head
    batch, steps, _ = x.shape
    h, tape = x.double(), []
    for block in backbone.blocks:
        lay, ffn, cfg = block.mlstm_layer, block.ffn, block.mlstm_layer.config
        heads = cfg.num_heads
        n1 = block.norm_mlstm.weight * h / rms(h, block.norm_mlstm.eps)
        q, k, v = n1 @ lay.q.weight.T, n1 @ lay.k.weight.T, n1 @ lay.v.weight.T
        o_pre = n1 @ lay.ogate_preact.weight.T
        cap = cfg.gate_soft_cap
        i_pre = cap * torch.tanh((n1 @ lay.igate_preact.weight.T + lay.igate_preact.bias) / cap)
        f_pre = cap * torch.tanh((n1 @ lay.fgate_preact.weight.T + lay.fgate_preact.bias) / cap)
        dh = q.shape[-1] // heads
        hh = torch.zeros(batch, steps, heads, v.shape[-1] // heads, dtype=x.dtype)
        alpha = torch.zeros(batch, heads, steps, steps, dtype=x.dtype)
        for b in range(batch):
            for hd in range(heads):
                qs, ks, vs = (t[b, :, hd * dh:(hd + 1) * dh] for t in (q, k, v))
                m, fa, ia, den = 0.0, [], [], []
                cmat, nvec = torch.zeros(dh, dh, dtype=x.dtype), torch.zeros(dh, dtype=x.dtype)
                for t in range(steps):
                    f_log = F.logsigmoid(f_pre[b, t, hd])
                    m_new = torch.maximum(f_log + m, i_pre[b, t, hd])
                    fa.append(torch.exp(f_log + m - m_new))
                    ia.append(torch.exp(i_pre[b, t, hd] - m_new))
                    cmat = fa[t] * cmat + ia[t] * torch.outer(ks[t], vs[t])
                    nvec = fa[t] * nvec + ia[t] * ks[t]
                    qt = qs[t] * dh ** -0.5
                    den.append(torch.maximum((qt @ nvec).abs(), torch.exp(-m_new)) + cfg.eps)
                    hh[b, t, hd] = (qt @ cmat) / den[t]
                    m = m_new
                for t in range(steps):
                    for i in range(t + 1):
                        decay = torch.prod(torch.stack(fa[i + 1:t + 1])) if i < t else 1.0
                        alpha[b, hd, t, i] = decay * ia[i] * (qs[t] @ ks[i]) * dh ** -0.5 / den[t]
        norm = lay.multihead_norm
        mu = hh.mean(-1, keepdim=True)
        sigma = torch.sqrt(((hh - mu) ** 2).mean(-1, keepdim=True) + norm.eps)
        w = norm.weight.view(heads, -1)
        y = w * (hh - mu) / sigma
        hout = torch.sigmoid(o_pre) * y.reshape(batch, steps, -1)
        out = hout @ lay.out_proj.weight.T
        h1 = h + out
        n2 = block.norm_ffn.weight * h1 / rms(h1, block.norm_ffn.eps)
        p = F.silu(n2 @ ffn.proj_up_gate.weight.T) * (n2 @ ffn.proj_up.weight.T)
        f = p @ ffn.proj_down.weight.T
        tape.append(dict(h=h, n1=n1, v=v, hh=hh, alpha=alpha, sigma=sigma, w=w, y=y, hout=hout, out=out, h1=h1,
                         n2=n2, p=p, f=f, dh=dh))
        h = h1 + f
    on = backbone.out_norm
    hf = on.weight * h / rms(h, on.eps)
    logits = hf[:, -1] @ head.weight.T + head.bias
    seed = torch.zeros_like(logits)
    seed[torch.arange(batch), target] = logits[torch.arange(batch), target]
    r_hf = torch.zeros_like(hf)
    r_hf[:, -1] = eps_linear(hf[:, -1], head.weight, head.bias, seed, eps)
    rel = rms_norm_relevance(on.weight, on.eps, h, hf, r_hf, eps)
    for block, s in zip(reversed(backbone.blocks), reversed(tape), strict=True):
        lay, ffn = block.mlstm_layer, block.ffn
        heads = lay.config.num_heads
        total = s["h1"] + s["f"]
        r_h1, r_f = s["h1"] * rel / stab(total, eps), s["f"] * rel / stab(total, eps)
        r_p = eps_linear(s["p"], ffn.proj_down.weight, None, r_f, eps)
        r_half = 0.5 * s["p"] * r_p / stab(s["p"], eps)
        r_n2 = (eps_linear(s["n2"], ffn.proj_up_gate.weight, None, r_half, eps)
                + eps_linear(s["n2"], ffn.proj_up.weight, None, r_half, eps))
        r_h1 = r_h1 + rms_norm_relevance(block.norm_ffn.weight, block.norm_ffn.eps, s["h1"], s["n2"], r_n2, eps)
        r_res, r_out = s["h"] * r_h1 / stab(s["h1"], eps), s["out"] * r_h1 / stab(s["h1"], eps)
        r_y = eps_linear(s["hout"], lay.out_proj.weight, None, r_out, eps).reshape(s["y"].shape)  # (σ(õ): a gate)
        c = s["w"] / s["sigma"] * r_y / stab(s["y"], eps)
        r_hh = s["hh"] * (c - c.mean(-1, keepdim=True))
        q = r_hh / stab(s["hh"], eps)  # (B, T, NH, DH)
        r_v = torch.zeros_like(s["v"]).reshape(batch, steps, heads, -1)
        vv = s["v"].reshape(batch, steps, heads, -1)
        for t in range(steps):
            for i in range(t + 1):
                r_v[:, i] += s["alpha"][:, :, t, i, None] * vv[:, i] * q[:, t]
        r_n1 = eps_linear(s["n1"], lay.v.weight, None, r_v.reshape(batch, steps, -1), eps)
        rel = r_res + rms_norm_relevance(block.norm_mlstm.weight, block.norm_mlstm.eps, s["h"], s["n1"], r_n1, eps)
    return rel, logits


@torch.no_grad()
def mamba2_reference(model, x, target, eps):
    """LRP (RecurrentLRP, half rule) of a Mamba2 classifier: the SSM run step by step with its (P, N) state per head;
    the read-out weights are the products of the per-step decays (gates), u the signal."""
    backbone, head = model.backbone, model.head
    batch, steps, _ = x.shape
    h, tape = x.double(), []
    for block in backbone.layers:
        m = block.mixer
        heads, p, groups, n = m.num_heads, m.head_dim, m.n_groups, m.ssm_state_size
        nrm = block.norm.weight * h / rms(h, block.norm.variance_epsilon)
        proj = nrm @ m.in_proj.weight.T
        z, xbc, dtr = proj.split([m.intermediate_size, m.conv_dim, heads], dim=-1)
        conv = causal_conv(xbc, m.conv1d)
        act = F.silu(conv)
        u, bg, cg = act.split([m.intermediate_size, groups * n, groups * n], dim=-1)
        delta = torch.clamp(F.softplus(dtr + m.dt_bias), *m.time_step_limit)
        a = -torch.exp(m.A_log)
        alpha = torch.zeros(batch, heads, steps, steps, dtype=x.dtype)
        yscan = torch.zeros(batch, steps, heads, p, dtype=x.dtype)
        for bi in range(batch):
            for hd in range(heads):
                g = hd // (heads // groups)
                bm, cm = bg[bi, :, g * n:(g + 1) * n], cg[bi, :, g * n:(g + 1) * n]
                uh = u[bi, :, hd * p:(hd + 1) * p]
                state = torch.zeros(p, n, dtype=x.dtype)
                for t in range(steps):
                    state = torch.exp(a[hd] * delta[bi, t, hd]) * state + delta[bi, t, hd] * torch.outer(uh[t], bm[t])
                    yscan[bi, t, hd] = state @ cm[t]
                    for i in range(t + 1):
                        decay = torch.prod(torch.exp(a[hd] * delta[bi, i + 1:t + 1, hd])) if i < t else 1.0
                        alpha[bi, hd, t, i] = decay * delta[bi, i, hd] * (cm[t] @ bm[i])
        skip = m.D[:, None] * u.reshape(batch, steps, heads, p)
        y2 = (yscan + skip).reshape(batch, steps, -1)
        prod = y2 * F.silu(z)
        size = m.norm.group_size
        grouped = prod.reshape(batch, steps, -1, size)
        rms_g = torch.sqrt((grouped ** 2).mean(-1, keepdim=True) + m.norm.variance_epsilon).expand_as(grouped)
        rms_g = rms_g.reshape(prod.shape)
        normed = m.norm.weight * prod / rms_g
        out = normed @ m.out_proj.weight.T
        tape.append(dict(h=h, nrm=nrm, xbc=xbc, conv=conv, u=u, alpha=alpha, yscan=yscan, skip=skip, y2=y2,
                         prod=prod, rms_g=rms_g, normed=normed, out=out, z=z))
        h = h + out
    hf = backbone.norm_f.weight * h / rms(h, backbone.norm_f.variance_epsilon)
    logits = hf[:, -1] @ head.weight.T + head.bias
    seed = torch.zeros_like(logits)
    seed[torch.arange(batch), target] = logits[torch.arange(batch), target]
    r_hf = torch.zeros_like(hf)
    r_hf[:, -1] = eps_linear(hf[:, -1], head.weight, head.bias, seed, eps)
    rel = rms_norm_relevance(backbone.norm_f.weight, backbone.norm_f.variance_epsilon, h, hf, r_hf, eps)
    for block, s in zip(reversed(backbone.layers), reversed(tape), strict=True):
        m = block.mixer
        heads, p = m.num_heads, m.head_dim
        total = s["h"] + s["out"]
        r_res, r_out = s["h"] * rel / stab(total, eps), s["out"] * rel / stab(total, eps)
        r_normed = eps_linear(s["normed"], m.out_proj.weight, None, r_out, eps)
        r_prod = s["prod"] * m.norm.weight / s["rms_g"] * r_normed / stab(s["normed"], eps)
        r_half = 0.5 * s["prod"] * r_prod / stab(s["prod"], eps)
        q = r_half.reshape(batch, steps, heads, p) / stab(s["y2"].reshape(batch, steps, heads, p), eps)
        r_u = (s["skip"] * q).clone()  # (the D skip's share)
        qy = s["yscan"] * q / stab(s["yscan"], eps)  # R_yscan / stab(yscan)
        uu = s["u"].reshape(batch, steps, heads, p)
        for t in range(steps):
            for i in range(t + 1):
                r_u[:, i] += s["alpha"][:, :, t, i, None] * uu[:, i] * qy[:, t]
        r_xbc = torch.zeros_like(s["xbc"])
        r_conv = torch.zeros_like(s["conv"])
        r_conv[..., :m.intermediate_size] = r_u.reshape(batch, steps, -1)  # (SiLU: pass; B, C: gates)
        r_xbc = causal_conv_relevance(s["xbc"], m.conv1d, s["conv"], r_conv, eps)
        r_proj = torch.cat([r_half, r_xbc, torch.zeros(batch, steps, heads, dtype=x.dtype)], -1)
        r_nrm = eps_linear(s["nrm"], m.in_proj.weight, None, r_proj, eps)
        rel = r_res + rms_norm_relevance(block.norm.weight, block.norm.variance_epsilon, s["h"], s["nrm"], r_nrm, eps)
    return rel, logits


def assert_matches_reference(result, model, x, reference, logits) -> None:
    """An explanation equals its family's step-by-step float64 reference: the reference's logits to 1e-12, the
    transformers forward to float32 rounding (it computes parts of the scan in float32), the relevance to 1e-9, and
    every token gets relevance (not a vacuous match)."""
    torch.testing.assert_close(result.output, logits, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(result.output, model(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.relevance, reference, rtol=1e-9, atol=1e-15)
    assert float(reference.abs().sum(-1).min()) > 0
