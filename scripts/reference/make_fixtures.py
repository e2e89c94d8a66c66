#!/usr/bin/env python3
"""Writes the reference fixtures tests/test_reference.lua checks our models against.

    python3 scripts/reference/make_fixtures.py [outdir=tests/fixtures]      (make fixtures)

Each fixture (HDF5) holds: attribute `config` (JSON: kind, model config with the keys of
lua/blt/models/*.lua, patcher, entropy model config), `rows` int32 [B, N] ([BOS, ids..]),
`params/<name>` (float32, our parameter names; the entropy model's under `entropy.`),
`logits` float32 [B, N-1, 260], `loss` (mean nats over non-pad targets), `grads/<name>`
(d loss / d parameter, trained parameters only), and for the BLT `lengths` int32 [B, Pmax]
(zero-padded) and `entropies` float32 [B, N-1] (entropy scheme).

Weights are random float32 values; the reference then runs in float64 on those exact
values, so a fixture's numbers are the model's, not float32 rounding of our own.
"""
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blt_ref as R  # noqa: E402

torch.set_num_threads(1)

TEXTS = [
    b"Hello, world! The quick (brown) fox; jumps -- over 3 dogs?",
    b"ok.\x02  Next doc: a=1, b=[2,3]... \"fin\" \xc3\xa9t\xc3\xa9!",
]


def make_rows(T):
    """B = 2 rows of N = T + 1 ids: BOS, bytes + 4 (row 2 holds an EOS and ends with pads)."""
    rows = []
    for i, t in enumerate(TEXTS):
        ids = [R.BOS] + [b if b == 2 else b + 4 for b in t]  # \x02 in the text stands for EOS
        if i == 1:
            ids = ids[: T + 1 - 3] + [R.PAD] * 3
        rows.append((ids + [R.PAD] * (T + 1))[: T + 1])
    return torch.tensor(rows, dtype=torch.int64)


def to64(W):
    return {k: v.double().requires_grad_(True) for k, v in W.items()}


def write(path, cfg, rows, W32, logits, loss, grads, extra):
    with h5py.File(path, "w") as f:
        f.attrs.create("config", np.bytes_(json.dumps(cfg, sort_keys=True)))
        f.create_dataset("rows", data=rows.numpy().astype(np.int32))
        for name, t in W32.items():
            f.create_dataset("params/" + name, data=t.numpy().astype(np.float32))
        for name, g in grads.items():
            f.create_dataset("grads/" + name, data=g.numpy().astype(np.float32))
        f.create_dataset("logits", data=logits.numpy().astype(np.float32))
        f.create_dataset("loss", data=np.float64(loss))
        for k, v in extra.items():
            f.create_dataset(k, data=v)
    print(f"{path}: {os.path.getsize(path)} bytes, loss {loss:.6f}")


def bytelm_fixture(out):
    c = dict(R.BYTELM_DEFAULTS, dim=24, layers=2, heads=2, window=16, multiple_of=16)
    rows = make_rows(48)
    W32 = R.init_weights(R.bytelm_shapes(c), seed=1, norm_jitter=0.2)
    W = to64(W32)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    logits = R.bytelm_forward(W, c, inputs)
    loss = R.lm_loss(logits, targets)
    loss.backward()
    grads = {k: W[k].grad for k in W32}
    write(os.path.join(out, "ref_bytelm.h5"), {"kind": "bytelm", "model": c}, rows, W32, logits.detach(),
          loss.item(), grads, {})


def blt_config(**kw):
    c = dict(dim=16, heads=2, k=2, multiple_of=16, rope_theta=10000.0, norm_eps=1e-5,
             encoder=dict(layers=2, window=16, cross_every_layer=True),
             **{"global": dict(dim=32, layers=2, heads=2, window=0)},
             decoder=dict(layers=2, window=16, cross_every_layer=True),
             cross=dict(heads=2), hash=dict(ngrams="3,4,5", buckets=61))
    for k, v in kw.items():
        if isinstance(v, dict):
            c[k] = dict(c[k], **v)
        else:
            c[k] = v
    return c


def pick_threshold(ent, quantile):
    """A threshold between two entropies near the quantile, as far from both as possible."""
    e = np.sort(ent.flatten().numpy())
    n = len(e)
    lo, hi = int(n * (quantile - 0.15)), int(n * (quantile + 0.15))
    gaps = e[lo + 1:hi + 1] - e[lo:hi]
    i = lo + int(np.argmax(gaps))
    return float((e[i] + e[i + 1]) / 2), float(gaps.max() / 2)


def blt_fixture(out, name, c, scheme, seed, ent_cfg=None):
    rows = make_rows(48)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    W32 = R.init_weights(R.blt_shapes(c), seed=seed, norm_jitter=0.2)
    cfg = {"kind": "blt", "model": c, "patcher": dict(scheme)}
    Wall32 = dict(W32)
    E = None
    extra = {}
    if ent_cfg is not None:
        E32 = R.init_weights(R.bytelm_shapes(ent_cfg, "entropy."), seed=seed + 100, norm_jitter=0.2)
        E32["entropy.head"] *= 4.0  # sharper predictions: entropies that vary along the row
        Wall32.update(E32)
        E = {k: v.double() for k, v in E32.items()}
        with torch.no_grad():
            ent = R.entropies(R.bytelm_forward(E, ent_cfg, inputs, prefix="entropy."))
        if "threshold" not in scheme:
            th, margin = pick_threshold(ent, 0.6)
            cfg["patcher"]["threshold"] = scheme["threshold"] = th
            print(f"{name}: threshold {th:.6f} (nearest entropy {margin:.2e} away)")
        cfg["entropy_model"] = ent_cfg
        extra["entropies"] = ent.numpy().astype(np.float32)
    W = to64(W32)
    p = R.blt_prepare(c, inputs, scheme, E, ent_cfg)
    logits = R.blt_forward(W, c, inputs, p)
    loss = R.lm_loss(logits, targets)
    loss.backward()
    grads = {k: W[k].grad for k in W32}
    extra["lengths"] = p["lengths"].numpy().astype(np.int32)
    print(f"{name}: patch lengths {[l[l > 0].tolist() for l in p['lengths'].numpy()]}")
    write(os.path.join(out, name + ".h5"), cfg, rows, Wall32, logits.detach(), loss.item(), grads, extra)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
    os.makedirs(out, exist_ok=True)
    bytelm_fixture(out)
    ent_cfg = dict(R.BYTELM_DEFAULTS, dim=16, layers=1, heads=2, window=32, multiple_of=16)
    # fixed 4, k 2 (k d_E = d_G: no in_proj), pooling after every layer, cross in every decoder layer
    blt_fixture(out, "ref_blt_fixed4", blt_config(), {"scheme": "fixed", "size": 4}, seed=11)
    # space, k 1 (in_proj), pooling after the last layer only, cross in the first decoder layer only
    blt_fixture(out, "ref_blt_space", blt_config(k=1, encoder=dict(cross_every_layer=False),
                                                 decoder=dict(cross_every_layer=False)),
                {"scheme": "space"}, seed=12)
    # entropy, k 2 with k d_E != d_G (in_proj), every layer both sides, a one-layer global transformer
    blt_fixture(out, "ref_blt_entropy", blt_config(hash=dict(ngrams="3,4,5,6,8", buckets=37),
                                                   **{"global": dict(dim=48, layers=1, heads=2, window=0)}),
                {"scheme": "entropy"}, seed=13, ent_cfg=ent_cfg)
    # entropy, k 2 = d_G / d_E (no in_proj), last encoder layer, first decoder layer, small windows
    blt_fixture(out, "ref_blt_entropy_last", blt_config(encoder=dict(window=8, cross_every_layer=False),
                                                        decoder=dict(window=8, cross_every_layer=False),
                                                        cross=dict(heads=1)),
                {"scheme": "entropy"}, seed=14, ent_cfg=ent_cfg)


if __name__ == "__main__":
    main()
