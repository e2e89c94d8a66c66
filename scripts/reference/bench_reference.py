#!/usr/bin/env python3
"""Training-step speed of the PyTorch reference BLT (scripts/reference/blt_ref.py), for the
`blt` section of scripts/bench.lua, which spawns it on the same configuration and rows:

    python3 scripts/reference/bench_reference.py --rows FILE --threads N --reps N \
        [--schemes fixed,space,entropy] [--size 4] [--target 4.0]

FILE holds the rows as integers (one row a line: BOS, ids). Per scheme it prints one line
`scheme <name> bytes_per_s <x> step_s <median s> mean_patch <bytes per patch>`. A step is
what the Lua bench times: entropies (entropy scheme, no gradients), patches, hash ids,
forward, backward, gradient clipping and AdamW, in float32 on the CPU. The reference is
plain PyTorch: attention is a masked dense softmax (it computes all T x T pairs).
"""
import argparse
import os
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blt_ref as R  # noqa: E402

BLT_CFG = dict(dim=128, heads=4, k=2, multiple_of=256, rope_theta=10000.0, norm_eps=1e-5,
               encoder=dict(layers=1, window=128, cross_every_layer=False),
               decoder=dict(layers=2, window=128, cross_every_layer=True),
               cross=dict(heads=4), hash=dict(ngrams="3,4,5,6,7,8", buckets=4096),
               **{"global": dict(dim=256, layers=4, heads=4, window=0)})
ENT_CFG = dict(R.BYTELM_DEFAULTS, dim=128, layers=2, heads=4, window=256, multiple_of=128)


def prepare(c, ids, scheme, E):
    ent = None
    if scheme["scheme"] == "entropy":
        with torch.no_grad():
            ent = R.entropies(R.bytelm_forward(E, ENT_CFG, ids, prefix="entropy."))
    L, pid, dec, P = R.patch_rows(ids, scheme, ent)
    buckets = {n: R.hash_buckets_fast(ids, n, c["hash"]["buckets"]) for n in R.ngrams_of(c)}
    return dict(lengths=L, pid=pid, dec=dec, P=P, buckets=buckets), ent


def main():
    warnings.filterwarnings("ignore", message="scatter_reduce")
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--schemes", default="fixed,space,entropy")
    ap.add_argument("--size", type=int, default=4)
    ap.add_argument("--target", type=float, default=4.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.rows) as f:
        rows = torch.tensor([[int(x) for x in line.split()] for line in f if line.strip()], dtype=torch.int64)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    B, T = inputs.shape
    c = BLT_CFG
    W = {k: v.requires_grad_(True) for k, v in R.init_weights(R.blt_shapes(c), seed=1).items()}
    E = R.init_weights(R.bytelm_shapes(ENT_CFG, "entropy."), seed=2)
    opt = torch.optim.AdamW(list(W.values()), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for name in a.schemes.split(","):
        scheme = {"scheme": name}
        if name == "fixed":
            scheme["size"] = a.size
        elif name == "entropy":
            # the threshold whose starts give the target mean patch size on these rows
            with torch.no_grad():
                e = R.entropies(R.bytelm_forward(E, ENT_CFG, inputs, prefix="entropy."))
            scheme["threshold"] = float(torch.quantile(e[:, 1:].flatten(), 1 - 1 / a.target))

        def step():
            opt.zero_grad()
            p, _ = prepare(c, inputs, scheme, E)
            loss = R.lm_loss(R.blt_forward(W, c, inputs, p), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(W.values()), 1.0)
            opt.step()
            return p

        p = step()  # warm-up
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        L = p["lengths"]
        n_patches = int((L > 0).sum()) - B  # BOS patches excluded
        mean_patch = (T - 1) * B / max(n_patches, 1)
        t = statistics.median(ts)
        print(f"scheme {name} bytes_per_s {B * T / t:.1f} step_s {t:.4f} mean_patch {mean_patch:.3f}", flush=True)


if __name__ == "__main__":
    main()
