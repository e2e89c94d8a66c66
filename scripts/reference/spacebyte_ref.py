#!/usr/bin/env python3
"""A PyTorch reference of SpaceByte, written from docs/model.md ("SpaceByte"), and the
fixtures tests/test_spacebyte.lua checks our model against:

    python3 scripts/reference/spacebyte_ref.py [outdir=tests/fixtures]     (part of make fixtures)

Writes ref_spacebyte.h5 (the model as documented) and ref_spacebyte_broken.h5 (the same
weights and rows, but the boundary rule shifted one byte later: the test must find that
our model does NOT match it). The fixture layout is make_fixtures.py's, plus `positions`
int32 [B, cap] (each row's boundary positions, -1 after the last).

Rows are processed one at a time (no batch padding): a different route from the Lua
model's batched gather, so the comparison checks that route too.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blt_ref as R  # noqa: E402
import make_fixtures as F  # noqa: E402

torch.set_num_threads(1)


def shapes(c):
    d, D = c["dim"], c["global"]["dim"]
    s = {"embed": (R.V, d)}
    for i in range(c["initial_layers"]):
        s.update(R.block_shapes(f"initial.{i}.", d, R.ffn_hidden(d, c["multiple_of"])))
    for i in range(c["global"]["layers"]):
        s.update(R.block_shapes(f"global.{i}.", D, R.ffn_hidden(D, c["multiple_of"])))
    for i in range(c["final_layers"]):
        s.update(R.block_shapes(f"final.{i}.", d, R.ffn_hidden(d, c["multiple_of"])))
    s["norm"] = (d,)
    s["head"] = (R.V, d)
    return s


def is_boundary(row, t):
    """docs/model.md: id t is BOS or EOS, or a space-like byte after a word byte; never pad."""
    i = row[t]
    if i == R.PAD:
        return False
    if i in (R.BOS, R.EOS):
        return True
    return t >= 1 and R._spacelike(i) and R._word(row[t - 1])


def boundaries(row, cap, shift=0):
    """The first cap boundary positions of a row (list of ids). shift=1 is the broken
    rule: a position is a boundary when the position before it would be (one late)."""
    out = []
    for t in range(len(row)):
        if t - shift >= 0 and row[t] != R.PAD and is_boundary(row, t - shift):
            if len(out) == cap:
                break
            out.append(t)
    return out


def forward(W, c, ids, shift=0):
    """ids int64 [B,T] -> logits [B,T,V], boundary positions per row."""
    B, T = ids.shape
    d, D, g = c["dim"], c["global"]["dim"], c["global"]
    eps, theta = c["norm_eps"], c["rope_theta"]
    x = W["embed"][ids]
    allowed = R.causal_mask(B, T, c["window"])
    pos = torch.arange(T)
    for i in range(c["initial_layers"]):
        x = R.block(W, f"initial.{i}.", x, c["heads"], allowed, pos, theta, eps)
    rows, all_pos = [], []
    for b in range(B):
        ts = boundaries(ids[b].tolist(), g["cap"], shift)
        all_pos.append(ts)
        xb = x[b]
        if ts:
            G = len(ts)
            u = torch.cat([torch.zeros(G, D - d, dtype=x.dtype), xb[ts]], -1).unsqueeze(0)
            gmask = R.causal_mask(1, G, g["window"])
            for i in range(g["layers"]):
                u = R.block(W, f"global.{i}.", u, g["heads"], gmask, torch.arange(G), theta, eps)
            add = torch.zeros_like(xb).index_add(0, torch.tensor(ts), u[0, :, D - d:])
            xb = xb + add
        rows.append(xb)
    x = torch.stack(rows)
    for i in range(c["final_layers"]):
        x = R.block(W, f"final.{i}.", x, c["heads"], allowed, pos, theta, eps)
    return R.linear(R.rmsnorm(x, W["norm"], eps), W["head"]), all_pos


def config():
    return dict(dim=16, heads=2, window=12, initial_layers=2, final_layers=1, multiple_of=16, rope_theta=10000.0,
                norm_eps=1e-5, **{"global": dict(dim=32, layers=2, heads=2, window=0, cap=10)})


def fixture(out, name, c, seed, shift):
    rows = F.make_rows(48)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    W32 = R.init_weights(shapes(c), seed=seed, norm_jitter=0.2)
    W = F.to64(W32)
    logits, pos = forward(W, c, inputs, shift)
    loss = R.lm_loss(logits, targets)
    loss.backward()
    grads = {k: W[k].grad for k in W32}
    P = np.full((len(pos), c["global"]["cap"]), -1, dtype=np.int32)
    for b, ts in enumerate(pos):
        P[b, :len(ts)] = ts
    print(f"{name}: boundary positions {pos}")
    F.write(os.path.join(out, name + ".h5"), {"kind": "spacebyte", "model": c, "shift": shift}, rows, W32,
            logits.detach(), loss.item(), grads, {"positions": P})


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
    os.makedirs(out, exist_ok=True)
    # cap 10: the second row has 13 boundaries (past the cap: local blocks only), the first 8 (padded in a batch)
    fixture(out, "ref_spacebyte", config(), seed=21, shift=0)
    fixture(out, "ref_spacebyte_broken", config(), seed=21, shift=1)


if __name__ == "__main__":
    main()
