#!/usr/bin/env python3
"""A PyTorch reference of MegaByte, written from docs/model.md ("MegaByte"), not from
the Lua code; the building blocks (RMSNorm, RoPE, attention, pre-norm block, weight
initialisation) are blt_ref.py's. Also writes its fixtures:

    python3 scripts/reference/megabyte_ref.py [outdir=tests/fixtures]      (make fixtures)

ref_megabyte.h5 is the model; ref_megabyte_leak.h5 is a deliberately broken copy whose
global model reads each patch's own bytes instead of the previous patch's, so a byte can
see itself: tests/test_megabyte.lua checks that our model matches the first and does
NOT match the second (the comparison can fail). Same file layout as make_fixtures.py.

Here the model is written over the targets: y[t] = ids[t+1] is what position t
predicts. Patch j predicts y[jP .. jP+P-1]; its global input is the embeddings of
y[(j-1)P .. jP-1] (the start patch for j = 0); its local input at slot p is the local
start token (p = 0) or the embedding of y[jP+p-1], plus the global vector of slot p.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blt_ref as R  # noqa: E402

MEGABYTE_DEFAULTS = dict(patch=4, dim=128, layers=2, heads=4, multiple_of=256, rope_theta=10000.0, norm_eps=1e-5,
                         **{"global": dict(dim=256, layers=4, heads=4, window=0)})


def megabyte_shapes(c):
    P, d, dg = c["patch"], c["dim"], c["global"]["dim"]
    s = {"global.embed": (R.V, d), "global.start": (P, d), "global.in_proj": (dg, P * d)}
    for i in range(c["global"]["layers"]):
        s.update(R.block_shapes(f"global.layers.{i}.", dg, R.ffn_hidden(dg, c["multiple_of"])))
    s["global.norm"] = (dg,)
    s["global.out_proj"] = (P * d, dg)
    s["local.embed"] = (R.V, d)
    s["local.start"] = (d,)
    for i in range(c["layers"]):
        s.update(R.block_shapes(f"local.layers.{i}.", d, R.ffn_hidden(d, c["multiple_of"])))
    s["local.norm"] = (d,)
    s["local.head"] = (R.V, d)
    return s


def megabyte_forward(W, c, ids, leak=False):
    """ids int64 [B, T] ([BOS, bytes..]) -> logits [B, T, V]. leak: the broken copy."""
    B, T = ids.shape
    P, d, g = c["patch"], c["dim"], c["global"]
    K = (T + P - 1) // P
    # the targets, padded to whole patches (a position past the row predicts a pad)
    y = torch.full((B, K * P), R.PAD, dtype=torch.int64)
    y[:, :T - 1] = ids[:, 1:]
    eg = W["global.embed"][y].reshape(B, K, P * d)  # patch j's own targets, concatenated
    if leak:
        gin = eg
    else:
        start = W["global.start"].reshape(1, 1, P * d).expand(B, 1, P * d)
        gin = torch.cat([start, eg[:, :K - 1]], 1)
    h = R.linear(gin, W["global.in_proj"])
    allowed = R.causal_mask(B, K, g["window"])
    for i in range(g["layers"]):
        h = R.block(W, f"global.layers.{i}.", h, g["heads"], allowed, torch.arange(K), c["rope_theta"], c["norm_eps"])
    gv = R.linear(R.rmsnorm(h, W["global.norm"], c["norm_eps"]), W["global.out_proj"]).reshape(B * K, P, d)
    el = W["local.embed"][y].reshape(B * K, P, d)
    x = torch.cat([W["local.start"].reshape(1, 1, d).expand(B * K, 1, d), el[:, :P - 1]], 1) + gv
    allowed = R.causal_mask(B * K, P, 0)
    for i in range(c["layers"]):
        x = R.block(W, f"local.layers.{i}.", x, c["heads"], allowed, torch.arange(P), c["rope_theta"], c["norm_eps"])
    logits = R.linear(R.rmsnorm(x, W["local.norm"], c["norm_eps"]), W["local.head"])
    return logits.reshape(B, K * P, R.V)[:, :T]


def fixture(out, name, c, seed, leak=False):
    import make_fixtures as F  # its rows, float64 copy and file writer
    rows = F.make_rows(48)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    W32 = R.init_weights(megabyte_shapes(c), seed=seed, norm_jitter=0.2)
    # the start token is a vector, not a gain: drawn as an embedding is
    gen = torch.Generator().manual_seed(seed + 1)
    W32["local.start"] = torch.randn(c["dim"], generator=gen) * c["dim"] ** -0.5
    W = F.to64(W32)
    logits = megabyte_forward(W, c, inputs, leak=leak)
    loss = R.lm_loss(logits, targets)
    loss.backward()
    grads = {k: W[k].grad if W[k].grad is not None else torch.zeros_like(W[k]) for k in W32}  # leak: no start
    F.write(os.path.join(out, name + ".h5"), {"kind": "megabyte", "model": c, "leak": leak}, rows, W32,
            logits.detach(), loss.item(), grads, {})


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    # 48 positions in patches of 5 (the last one padded), a global window of 3 patches
    c = dict(MEGABYTE_DEFAULTS, patch=5, dim=16, layers=2, heads=2, multiple_of=16,
             **{"global": dict(dim=32, layers=2, heads=2, window=3)})
    fixture(out, "ref_megabyte", c, seed=21)
    fixture(out, "ref_megabyte_leak", c, seed=21, leak=True)


if __name__ == "__main__":
    main()
