#!/usr/bin/env python3
"""Training-step speed of the PyTorch reference (scripts/reference/blt_ref.py), for the
`compare` section of scripts/bench.lua, which spawns it once per round and precision on
the same model config, rows and thread count as our own step:

    python3 scripts/reference/bench_reference.py --model blt|bytelm --config JSON \\
        --rows FILE --threads N --reps N [--precision fp32|bf16] [--size 4] [--attention blocked|dense]
    python3 scripts/reference/bench_reference.py --self-test

FILE holds the rows as integers (one row a line: BOS, ids). It prints one line
`model <m> precision <p> attention <a> step_s <median s> bytes_per_s <x> peak_rss_mb <MiB> steps <s,s,..>`.
A step is what the Lua bench times: fixed patches and hash ids (the BLT), forward,
backward, gradient clipping and AdamW, on the CPU. precision bf16 is one line of
PyTorch, torch.autocast("cpu", dtype=torch.bfloat16), around the forward and the loss.
attention blocked (the default) computes attention as a PyTorch user would for speed:
windowed self-attention in blocks of queries over their window, cross attention over
gathered patch bytes and slots (blt_ref.Causal, PatchBytes, SlotsOf); dense uses the
fixtures' T x T masks. peak_rss_mb is the process's peak resident memory (ru_maxrss),
the Python interpreter and torch included.

--self-test checks that the blocked attention gives the dense masks' logits and
gradients (float64, ByteLM and the BLT under fixed, space and entropy patches, blocks
smaller than the rows) and prints `self-test ok <n> checks`; it exits 1 on a mismatch.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blt_ref as R  # noqa: E402


def blt_prepare(c, ids, scheme):
    L, pid, dec, P = R.patch_rows(ids, scheme, None)
    buckets = {n: R.hash_buckets_fast(ids, n, c["hash"]["buckets"]) for n in R.ngrams_of(c)}
    return dict(lengths=L, pid=pid, dec=dec, P=P, buckets=buckets)


def make_step(kind, c, W, opt, inputs, targets, size, precision, blocked):
    params = list(W.values())
    scheme = {"scheme": "fixed", "size": size}

    def forward_loss():
        if kind == "blt":
            p = blt_prepare(c, inputs, scheme)
            logits = R.blt_forward(W, c, inputs, p, blocked=blocked)
        else:
            logits = R.bytelm_forward(W, c, inputs, blocked=blocked)
        # the loss in fp32 (autocast runs log_softmax in fp32 anyway)
        return R.lm_loss(logits.float(), targets)

    def step():
        opt.zero_grad()
        if precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = forward_loss()
        else:
            loss = forward_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss)

    return step


def bench(a):
    torch.set_num_threads(a.threads)
    c = json.loads(a.config)
    with open(a.rows) as f:
        rows = torch.tensor([[int(x) for x in line.split()] for line in f if line.strip()], dtype=torch.int64)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    B, T = inputs.shape
    shapes = R.blt_shapes(c) if a.model == "blt" else R.bytelm_shapes(c)
    W = {k: v.requires_grad_(True) for k, v in R.init_weights(shapes, seed=1).items()}
    opt = torch.optim.AdamW(list(W.values()), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    step = make_step(a.model, c, W, opt, inputs, targets, a.size, a.precision, a.attention == "blocked")
    step()  # warm-up
    ts = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    t = statistics.median(ts)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"model {a.model} precision {a.precision} attention {a.attention} step_s {t:.5f} "
          f"bytes_per_s {B * T / t:.1f} peak_rss_mb {peak:.1f} steps {','.join(f'{x:.5f}' for x in ts)}", flush=True)


def self_test():
    """Blocked attention == dense masks: logits and gradients in float64."""
    torch.manual_seed(0)
    checks, worst = 0, 0.0
    R.BLOCK = 16  # blocks far smaller than the rows: several per row, windows across blocks
    B, T = 2, 48
    ids = torch.randint(4, R.V, (B, T))
    ids[:, 0] = R.BOS
    ids[0, 20:23] = 36  # spaces: uneven patches for the space scheme
    bl = dict(R.BYTELM_DEFAULTS, dim=16, layers=2, heads=2, window=8, multiple_of=16)
    bc = dict(dim=16, heads=2, k=2, multiple_of=16, rope_theta=10000.0, norm_eps=1e-5,
              encoder=dict(layers=2, window=8, cross_every_layer=True),
              decoder=dict(layers=2, window=8, cross_every_layer=True),
              cross=dict(heads=2), hash=dict(ngrams="3,4", buckets=61),
              **{"global": dict(dim=32, layers=2, heads=2, window=3)})
    ent = torch.rand(B, T) * 3
    cases = [("bytelm", bl, None), ("blt fixed 3", bc, {"scheme": "fixed", "size": 3}),
             ("blt space", bc, {"scheme": "space"}), ("blt entropy", bc, {"scheme": "entropy", "threshold": 1.5}),
             ("blt fixed 5, global window 0", dict(bc, **{"global": dict(dim=32, layers=1, heads=2, window=0)}),
              {"scheme": "fixed", "size": 5})]
    for name, c, scheme in cases:
        shapes = R.blt_shapes(c) if scheme else R.bytelm_shapes(c)
        W0 = R.init_weights(shapes, seed=3, norm_jitter=0.1)
        out = []
        for blocked in (False, True):
            W = {k: v.double().requires_grad_(True) for k, v in W0.items()}
            if scheme:
                L, pid, dec, P = R.patch_rows(ids, scheme, ent if scheme["scheme"] == "entropy" else None)
                p = dict(lengths=L, pid=pid, dec=dec, P=P,
                         buckets={n: R.hash_buckets_fast(ids, n, c["hash"]["buckets"]) for n in R.ngrams_of(c)})
                logits = R.blt_forward(W, c, ids, p, blocked=blocked)
            else:
                logits = R.bytelm_forward(W, c, ids, blocked=blocked)
            (logits * torch.linspace(-1, 1, R.V, dtype=torch.float64)).sum().backward()
            out.append((logits.detach(), {k: v.grad for k, v in W.items()}))
        (l0, g0), (l1, g1) = out
        errs = [float((l0 - l1).abs().max() / l0.abs().max())]
        errs += [float((g0[k] - g1[k]).abs().max() / max(float(g0[k].abs().max()), 1e-300)) for k in g0]
        e = max(errs)
        worst = max(worst, e)
        checks += len(errs)
        # float64: the two orders of summation differ by ~1e-16 relative
        if not e <= 1e-10:
            print(f"self-test FAILED: {name}: blocked attention differs from the dense masks by {e:.3g} (relative)")
            sys.exit(1)
    print(f"self-test ok {checks} checks (logits and every gradient of {len(cases)} models, blocked == dense masks, "
          f"worst relative difference {worst:.3g})")


def main():
    warnings.filterwarnings("ignore", message="scatter_reduce")
    ap = argparse.ArgumentParser()
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--model", choices=["blt", "bytelm"], default="blt")
    ap.add_argument("--config")
    ap.add_argument("--rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--attention", choices=["blocked", "dense"], default="blocked")
    ap.add_argument("--size", type=int, default=4)
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if not a.config or not a.rows:
        ap.error("--config and --rows are needed (or --self-test)")
    bench(a)


if __name__ == "__main__":
    main()
