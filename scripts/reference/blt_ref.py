"""A compact PyTorch (CPU, float32) reference of ByteLM and the Byte Latent Transformer,
written from docs/model.md and docs/patching.md (not from the Lua code).

Weights are a dict {name: tensor} with the names of docs/model.md (linear maps [out, in]).
Configs are the dicts of lua/blt/models/{bytelm,blt}.lua's defaults (the same keys), so a
fixture's config can be fed to both sides.
"""
import math
import torch

V = 260
PAD, BOS, EOS = 0, 1, 2
HASH_A = 1000000007
M64 = (1 << 64) - 1


def ffn_hidden(d, multiple_of):
    h = (8 * d) // 3
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


# ---------------------------------------------------------------- building blocks

def rmsnorm(x, g, eps=1e-5):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * g


def linear(x, w):
    return x @ w.t()


def rope(x, heads, positions, theta):
    """x [B, T, H*hd]; positions [T] or [B, T] (ints); pairs (2i, 2i+1) rotated by pos * theta^(-2i/hd)."""
    B, T, D = x.shape
    hd = D // heads
    i = torch.arange(hd // 2, dtype=torch.float64)
    freq = theta ** (-2.0 * i / hd)
    pos = positions.to(torch.float64)
    if pos.dim() == 1:
        pos = pos.unsqueeze(0).expand(B, T)
    ang = pos.unsqueeze(-1) * freq  # [B, T, hd/2]
    cos = torch.cos(ang).to(x.dtype).unsqueeze(2)  # [B, T, 1, hd/2]
    sin = torch.sin(ang).to(x.dtype).unsqueeze(2)
    xp = x.view(B, T, heads, hd // 2, 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.reshape(B, T, D)


def attention(q, k, v, heads, allowed):
    """q [B,Tq,H*hd], k/v [B,Tk,H*hd], allowed bool [B,Tq,Tk]. A query with no key gets 0.
    allowed may instead be a Causal, PatchBytes or SlotsOf (the same attention, in blocks)."""
    if isinstance(allowed, Causal):
        return attention_causal_blocks(q, k, v, heads, allowed)
    if isinstance(allowed, PatchBytes):
        return attention_patch_bytes(q, k, v, heads, allowed)
    if isinstance(allowed, SlotsOf):
        return attention_slots_of(q, k, v, heads, allowed)
    B, Tq, D = q.shape
    Tk = k.shape[1]
    hd = D // heads
    qh = q.view(B, Tq, heads, hd).transpose(1, 2)
    kh = k.view(B, Tk, heads, hd).transpose(1, 2)
    vh = v.view(B, Tk, heads, hd).transpose(1, 2)
    s = (qh @ kh.transpose(-1, -2)) / math.sqrt(hd)
    mask = allowed.unsqueeze(1)  # [B,1,Tq,Tk]
    # masked keys get the lowest finite score, so exp() makes them exactly 0 in any row
    # that has a key; a row without keys (a padding patch's query) is zeroed after
    p = torch.softmax(s.masked_fill(~mask, torch.finfo(s.dtype).min), -1)
    o = (p @ vh) * mask.any(-1, keepdim=True)
    return o.transpose(1, 2).reshape(B, Tq, D)


# ---------------------------------------------------------------- attention in blocks
# What a PyTorch user writes for speed (scripts/reference/bench_reference.py uses it; the
# fixtures use the dense masks above): the same attention, without a T x T score matrix.
# `allowed` may be one of these instead of a bool mask; attention() dispatches on it.

BLOCK = 128  # queries per block


class Causal:
    """Causal self-attention within `window` earlier positions (0: all), computed in
    blocks of `block` queries, each against only the keys its window can reach."""

    def __init__(self, window, block=None):
        self.window, self.block = window or 0, block or BLOCK


class PatchBytes:
    """Encoder cross attention: slot s queries the bytes of patch s // k only. Patches are
    contiguous, so each patch's bytes are gathered ([B, P, Lmax]), not masked out of T."""

    def __init__(self, lengths, k):
        B, P = lengths.shape
        start = torch.cumsum(lengths, 1) - lengths  # first byte of each patch
        lmax = max(int(lengths.max()), 1)
        j = torch.arange(lmax)
        self.index = (start.unsqueeze(-1) + j).clamp(max=int(lengths.sum(1).max()) - 1)  # [B, P, Lmax]
        self.valid = j < lengths.unsqueeze(-1)  # [B, P, Lmax]
        self.k = k


class SlotsOf:
    """Decoder cross attention: byte t queries the k slots of patch dec[t] only (gathered)."""

    def __init__(self, dec, k):
        self.dec, self.k = dec, k


def _heads(x, heads):
    B, T, D = x.shape
    return x.view(B, T, heads, D // heads).transpose(1, 2)  # [B, H, T, hd]


def attention_causal_blocks(q, k, v, heads, c):
    B, T, D = q.shape
    hd = D // heads
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    out = []
    for i0 in range(0, T, c.block):
        i1 = min(T, i0 + c.block)
        j0 = max(0, i0 - c.window + 1) if c.window else 0
        s = (qh[:, :, i0:i1] @ kh[:, :, j0:i1].transpose(-1, -2)) / math.sqrt(hd)
        t, j = torch.arange(i0, i1).view(-1, 1), torch.arange(j0, i1).view(1, -1)
        ok = j <= t
        if c.window:
            ok &= j > t - c.window
        # every query sees itself: no row without keys
        p = torch.softmax(s.masked_fill(~ok, torch.finfo(s.dtype).min), -1)
        out.append(p @ vh[:, :, j0:i1])
    return torch.cat(out, 2).transpose(1, 2).reshape(B, T, D)


def attention_patch_bytes(q, k, v, heads, c):
    """q [B, P*k, D] slots; k, v [B, T, D] bytes."""
    B, S, D = q.shape
    P, L = c.index.shape[1], c.index.shape[2]
    hd = D // heads
    idx = c.index.reshape(B, P * L, 1).expand(B, P * L, D)
    kg = torch.gather(k, 1, idx).view(B, P, L, heads, hd).permute(0, 1, 3, 2, 4)  # [B, P, H, L, hd]
    vg = torch.gather(v, 1, idx).view(B, P, L, heads, hd).permute(0, 1, 3, 2, 4)
    qg = q.view(B, P, c.k, heads, hd).permute(0, 1, 3, 2, 4)  # [B, P, H, k, hd]
    s = (qg @ kg.transpose(-1, -2)) / math.sqrt(hd)  # [B, P, H, k, L]
    ok = c.valid.view(B, P, 1, 1, L)
    p = torch.softmax(s.masked_fill(~ok, torch.finfo(s.dtype).min), -1)
    o = (p @ vg) * ok.any(-1, keepdim=True)  # a padding patch (no bytes) gives 0
    return o.permute(0, 1, 3, 2, 4).reshape(B, S, D)


def attention_slots_of(q, k, v, heads, c):
    """q [B, T, D] bytes; k, v [B, P*k, D] slots."""
    B, T, D = q.shape
    hd = D // heads
    slot = (c.dec.unsqueeze(-1) * c.k + torch.arange(c.k)).reshape(B, T * c.k, 1).expand(B, T * c.k, D)
    kg = torch.gather(k, 1, slot).view(B, T, c.k, heads, hd).permute(0, 1, 3, 2, 4)  # [B, T, H, k, hd]
    vg = torch.gather(v, 1, slot).view(B, T, c.k, heads, hd).permute(0, 1, 3, 2, 4)
    qg = q.view(B, T, heads, 1, hd)
    p = torch.softmax((qg @ kg.transpose(-1, -2)) / math.sqrt(hd), -1)  # [B, T, H, 1, k]
    return (p @ vg).reshape(B, T, D)


def causal_mask(B, T, window):
    t = torch.arange(T)
    allowed = t.view(T, 1) >= t.view(1, T)
    if window and window > 0:
        allowed &= t.view(1, T) > t.view(T, 1) - window
    return allowed.unsqueeze(0).expand(B, T, T)


def block(W, pre, x, heads, allowed, positions, theta, eps):
    a = rmsnorm(x, W[pre + "attn_norm"], eps)
    q = rope(linear(a, W[pre + "attn.wq"]), heads, positions, theta)
    k = rope(linear(a, W[pre + "attn.wk"]), heads, positions, theta)
    v = linear(a, W[pre + "attn.wv"])
    h = x + linear(attention(q, k, v, heads, allowed), W[pre + "attn.wo"])
    f = rmsnorm(h, W[pre + "ffn_norm"], eps)
    g = torch.nn.functional.silu(linear(f, W[pre + "ffn.w1"])) * linear(f, W[pre + "ffn.w3"])
    return h + linear(g, W[pre + "ffn.w2"])


def cross(W, pre, q_in, kv_in, heads, allowed, eps=1e-5):
    """P_out = P_in + Wo Attn(Wq q_norm(P_in), Wk kv_norm(kv), Wv kv_norm(kv)); no positions."""
    kvn = rmsnorm(kv_in, W[pre + "kv_norm"], eps)
    q = linear(rmsnorm(q_in, W[pre + "q_norm"], eps), W[pre + "wq"])
    a = attention(q, linear(kvn, W[pre + "wk"]), linear(kvn, W[pre + "wv"]), heads, allowed)
    return q_in + linear(a, W[pre + "wo"])


def _tn(t, std, gen):
    # rejection sampling of N(0, std) cut at +-3 std, seeded
    flat = t.view(-1)
    n, filled = flat.numel(), 0
    while filled < n:
        x = torch.randn(2 * (n - filled) + 16, generator=gen) * std
        x = x[x.abs() <= 3 * std][: n - filled]
        flat[filled:filled + x.numel()] = x
        filled += x.numel()
    return t


# ---------------------------------------------------------------- ByteLM

BYTELM_DEFAULTS = dict(dim=256, layers=4, heads=4, window=512, multiple_of=256, rope_theta=10000.0, norm_eps=1e-5)


def bytelm_shapes(c, prefix=""):
    d, h = c["dim"], ffn_hidden(c["dim"], c["multiple_of"])
    s = {prefix + "embed": (V, d)}
    for i in range(c["layers"]):
        s.update(block_shapes(f"{prefix}layers.{i}.", d, h))
    s[prefix + "norm"] = (d,)
    s[prefix + "head"] = (V, d)
    return s


def block_shapes(pre, d, h):
    return {pre + "attn_norm": (d,), pre + "attn.wq": (d, d), pre + "attn.wk": (d, d), pre + "attn.wv": (d, d),
            pre + "attn.wo": (d, d), pre + "ffn_norm": (d,), pre + "ffn.w1": (h, d), pre + "ffn.w3": (h, d),
            pre + "ffn.w2": (d, h)}


def cross_shapes(pre, d):
    return {pre + "q_norm": (d,), pre + "kv_norm": (d,), pre + "wq": (d, d), pre + "wk": (d, d),
            pre + "wv": (d, d), pre + "wo": (d, d)}


def init_weights(shapes, seed, norm_jitter=0.0):
    """Random weights: linear maps N(0, in^-1/2) cut at 3 sigma, embeddings/tables dim^-1/2,
    norm gains 1 (+ uniform jitter, so that fixtures exercise the gains)."""
    gen = torch.Generator().manual_seed(seed)
    W = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            W[name] = 1.0 + norm_jitter * (2 * torch.rand(shape, generator=gen) - 1)
        else:
            W[name] = _tn(torch.empty(shape), shape[1] ** -0.5, gen)
    return W


def bytelm_forward(W, c, ids, prefix="", blocked=False):
    """ids int64 [B,T] -> logits [B,T,V]. blocked: attention in blocks (Causal), not a dense mask."""
    B, T = ids.shape
    x = W[prefix + "embed"][ids]
    allowed = Causal(c["window"]) if blocked else causal_mask(B, T, c["window"])
    pos = torch.arange(T)
    for i in range(c["layers"]):
        x = block(W, f"{prefix}layers.{i}.", x, c["heads"], allowed, pos, c["rope_theta"], c["norm_eps"])
    return linear(rmsnorm(x, W[prefix + "norm"], c["norm_eps"]), W[prefix + "head"])


def entropies(logits):
    lp = torch.log_softmax(logits, -1)
    return -(lp.exp() * lp).sum(-1)


def lm_loss(logits, targets):
    """Mean next-token cross-entropy (nats) over non-pad targets."""
    lp = torch.log_softmax(logits, -1)
    nll = -lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    keep = targets != PAD
    return nll[keep].sum() / keep.sum()


# ---------------------------------------------------------------- patching (docs/patching.md)

def _word(i):
    if i < 4:
        return False
    b = i - 4
    return (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or (0x80 <= b <= 0xBF)


def _spacelike(i):
    return i >= 4 and not _word(i)


def flags(row, scheme, ent=None):
    """row: list of ids (N); returns s[0..N] (N+1 flags, the last is s[N])."""
    N = len(row)
    s = [0] * (N + 1)
    for t in range(2, N + 1):
        if scheme["scheme"] == "fixed":
            s[t] = int((t - 1) % scheme["size"] == 0)
        elif scheme["scheme"] == "space":
            s[t] = int(row[t - 1] < 4 or (_spacelike(row[t - 1]) and _word(row[t - 2])))
        elif scheme["scheme"] == "entropy":
            s[t] = int(float(ent[t - 1]) > scheme["threshold"])
        else:
            raise ValueError(scheme["scheme"])
    s[0] = s[1] = 1  # BOS is a patch of its own; the first byte starts one
    mpl = scheme.get("max_patch_len")
    if mpl:
        r = 0
        for t in range(N + 1):
            if t > 0 and r >= mpl:
                s[t] = 1
            r = 1 if s[t] else r + 1
    return s


def patch_rows(ids, scheme, ent=None):
    """ids [B,T] -> lengths [B,Pmax] (zero-padded), pid [B,T], dec [B,T] (decoder patch ids), P."""
    B, T = ids.shape
    all_s = [flags(ids[b].tolist(), scheme, None if ent is None else ent[b].tolist()) for b in range(B)]
    lengths, pids, decs = [], [], []
    for s in all_s:
        pid, c = [], -1
        for t in range(T):
            c += s[t]
            pid.append(c)
        # patch_of(t+1) - 1: the patch of position t+1 (t+1 = T uses s[T])
        dec = [pid[t + 1] - 1 for t in range(T - 1)] + [pid[T - 1] + s[T] - 1]
        n = pid[-1] + 1
        ln = [0] * n
        for p in pid:
            ln[p] += 1
        lengths.append(ln)
        pids.append(pid)
        decs.append(dec)
    P = max(len(l) for l in lengths)
    L = torch.zeros(B, P, dtype=torch.int64)
    for b, l in enumerate(lengths):
        L[b, :len(l)] = torch.tensor(l)
    return L, torch.tensor(pids), torch.tensor(decs), P


# ---------------------------------------------------------------- hash n-grams

def hash_buckets(ids, n, buckets):
    """ids [B,T] -> bucket of the n-gram ending at each t (left-padded with 0)."""
    B, T = ids.shape
    rows = ids.tolist()
    out = []
    for r in rows:
        o = []
        for t in range(T):
            h = 0
            for k in range(n):
                j = t - n + 1 + k
                w = r[j] if j >= 0 else 0
                h = (h + w * pow(HASH_A, k, 1 << 64)) & M64
            if h >= 1 << 63:
                h -= 1 << 64
            o.append(h % buckets)  # Python's % is floor-mod: non-negative
        out.append(o)
    return torch.tensor(out, dtype=torch.int64)


# ---------------------------------------------------------------- BLT

def ngrams_of(c):
    if c["hash"]["buckets"] == 0:
        return []
    return [int(x) for x in str(c["hash"]["ngrams"]).split(",") if x.strip()]


def pooled_layers(c):
    L = c["encoder"]["layers"]
    return list(range(L)) if c["encoder"]["cross_every_layer"] else [L - 1]


def blt_shapes(c):
    d, dg, k = c["dim"], c["global"]["dim"], c["k"]
    h, hg = ffn_hidden(d, c["multiple_of"]), ffn_hidden(dg, c["multiple_of"])
    s = {"encoder.byte_embed": (V, d)}
    for n in ngrams_of(c):
        s[f"encoder.hash.n{n}"] = (c["hash"]["buckets"], d)
    for i in range(c["encoder"]["layers"]):
        s.update(block_shapes(f"encoder.layers.{i}.", d, h))
    s["encoder.pool_proj"] = (k * d, d)
    # cross blocks are numbered in order from 0 over the pooled layers
    for j, _ in enumerate(pooled_layers(c)):
        s.update(cross_shapes(f"encoder.cross.{j}.", d))
    if k * d != dg:
        s["global.in_proj"] = (dg, k * d)
    for i in range(c["global"]["layers"]):
        s.update(block_shapes(f"global.layers.{i}.", dg, hg))
    s["decoder.patch_proj"] = (k * d, dg)
    n_dc = c["decoder"]["layers"] if c["decoder"]["cross_every_layer"] else 1
    for i in range(n_dc):
        s.update(cross_shapes(f"decoder.cross.{i}.", d))
    for i in range(c["decoder"]["layers"]):
        s.update(block_shapes(f"decoder.layers.{i}.", d, h))
    s["decoder.norm"] = (d,)
    s["decoder.head"] = (V, d)
    return s


def blt_prepare(c, ids, scheme, entropy_weights=None, entropy_cfg=None):
    ent = None
    if scheme["scheme"] in ("entropy",):
        with torch.no_grad():
            ent = entropies(bytelm_forward(entropy_weights, entropy_cfg, ids, prefix="entropy."))
    L, pid, dec, P = patch_rows(ids, scheme, ent)
    buckets = {n: hash_buckets(ids, n, c["hash"]["buckets"]) for n in ngrams_of(c)}
    return dict(lengths=L, pid=pid, dec=dec, P=P, entropies=ent, buckets=buckets)


def blt_forward(W, c, ids, p, blocked=False):
    """blocked: every attention in blocks (Causal, PatchBytes, SlotsOf), no dense mask."""
    B, T = ids.shape
    d, dg, k, P = c["dim"], c["global"]["dim"], c["k"], p["P"]
    eps, theta = c["norm_eps"], c["rope_theta"]
    pos = torch.arange(T)
    # encoder input: byte embedding + hash n-gram tables
    h = W["encoder.byte_embed"][ids]
    for n in ngrams_of(c):
        h = h + W[f"encoder.hash.n{n}"][p["buckets"][n]]
    slot_patch = torch.arange(P * k) // k  # slot s belongs to patch s // k
    if blocked:
        enc_mask, pool_mask = Causal(c["encoder"]["window"]), PatchBytes(p["lengths"], k)
    else:
        enc_mask = causal_mask(B, T, c["encoder"]["window"])
        pool_mask = slot_patch.view(1, P * k, 1) == p["pid"].view(B, 1, T)  # [B, P*k, T]
    pooled = pooled_layers(c)
    q = None
    for i in range(c["encoder"]["layers"]):
        h = block(W, f"encoder.layers.{i}.", h, c["heads"], enc_mask, pos, theta, eps)
        if i in pooled:
            if q is None:
                # max over each patch's bytes (an empty, padding patch gives 0)
                idx = p["pid"].unsqueeze(-1).expand(B, T, d)
                hm = torch.zeros(B, P, d, dtype=h.dtype).scatter_reduce(1, idx, h, "amax", include_self=False)
                q = linear(hm, W["encoder.pool_proj"]).reshape(B, P * k, d)
            q = cross(W, f"encoder.cross.{pooled.index(i)}.", q, h, c["cross"]["heads"], pool_mask)
    # global transformer over patches: causal, RoPE positions = patch indices, no final norm
    g = q.reshape(B, P, k * d)
    if k * d != dg:
        g = linear(g, W["global.in_proj"])
    gmask = Causal(c["global"]["window"]) if blocked else causal_mask(B, P, c["global"]["window"])
    gpos = torch.arange(P)
    for i in range(c["global"]["layers"]):
        g = block(W, f"global.layers.{i}.", g, c["global"]["heads"], gmask, gpos, theta, eps)
    # decoder: byte t queries the k slots of patch dec[t] = patch_of(t+1) - 1
    kv = linear(g, W["decoder.patch_proj"]).reshape(B, P * k, d)
    if blocked:
        dec_mask, self_mask = SlotsOf(p["dec"], k), Causal(c["decoder"]["window"])
    else:
        dec_mask = p["dec"].view(B, T, 1) == slot_patch.view(1, 1, P * k)
        self_mask = causal_mask(B, T, c["decoder"]["window"])
    for i in range(c["decoder"]["layers"]):
        if c["decoder"]["cross_every_layer"] or i == 0:
            h = cross(W, f"decoder.cross.{i}.", h, kv, c["cross"]["heads"], dec_mask)
        h = block(W, f"decoder.layers.{i}.", h, c["heads"], self_mask, pos, theta, eps)
    return linear(rmsnorm(h, W["decoder.norm"], eps), W["decoder.head"])


def hash_buckets_fast(ids, n, buckets):
    """hash_buckets with torch int64 arithmetic (which wraps modulo 2^64, as the rule asks)."""
    B, T = ids.shape
    padded = torch.cat([torch.zeros(B, n - 1, dtype=torch.int64), ids.to(torch.int64)], 1)
    h = torch.zeros(B, T, dtype=torch.int64)
    for k in range(n):
        ak = pow(HASH_A, k, 1 << 64)
        ak = ak - (1 << 64) if ak >= 1 << 63 else ak  # the same bits as a signed int64
        h = h + padded[:, k:k + T] * ak  # w_k = x[t - n + 1 + k]
    return torch.remainder(h, buckets)
