"""Does a per-model monotone calibration (Platt, isotonic) fitted on out-of-fold predictions help mf?

A check for issue 10 (it did not: train-CV AIQ 0.6287 raw, 0.6257 Platt, 0.6202 isotonic).
Usage: python benchmarks/calibration_check.py   (about 2 min on 2 cores)
"""
# ruff: noqa: E402, E501, B023  (a one-screen experiment script)

import sys
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))
import heldout_routing as H
import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from polyroute.routing_eval.train import out_of_fold

data = H.load_data(H.DATA)
vec = H.Vectors(data.pool)
EMB = "minilm-lexical"


def platt(oof, y, p):
    out = np.empty_like(p)
    for j in range(p.shape[1]):
        lo = np.log(np.clip(oof[:, j], 1e-4, 1 - 1e-4) / (1 - np.clip(oof[:, j], 1e-4, 1 - 1e-4)))
        lp = np.log(np.clip(p[:, j], 1e-4, 1 - 1e-4) / (1 - np.clip(p[:, j], 1e-4, 1 - 1e-4)))
        yy = y[:, j]
        # fractional targets: weighted duplicate rows
        X = np.concatenate([lo, lo])[:, None]
        t = np.r_[np.ones(len(lo)), np.zeros(len(lo))]
        w = np.r_[yy, 1 - yy]
        m = LogisticRegression(C=1e4).fit(X, t, sample_weight=w + 1e-9)
        out[:, j] = m.predict_proba(lp[:, None])[:, 1]
    return out


def iso(oof, y, p):
    out = np.empty_like(p)
    for j in range(p.shape[1]):
        m = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(oof[:, j], y[:, j])
        out[:, j] = m.predict(p[:, j])
    return out


def report(tag, test, p):
    s = H.summary(test, p)
    print(
        f"{tag:28s} aiq {s['aiq']:.4f} q0 {s['quality']:.4f} q@best {s['q@best_cost']:.4f} cost98 {s['cost98']:.3f}",
        flush=True,
    )


t0 = time.time()
# (a) shipped
xtr, xte = vec.of(EMB, data.train.prompts), vec.of(EMB, data.test.prompts)


def build():
    return H.build("mf")


oof = out_of_fold(build, xtr, data.train, folds=5)
r = build()
r.fit(xtr, data.train.scores, data.train.models, data.train.prompts)
p = r.predict_embeddings(xte, data.test.prompts)
print("(a) shipped", time.time() - t0)
report("mf", data.test, p)
report("mf + platt", data.test, platt(oof, data.train.scores, p))
report("mf + isotonic", data.test, iso(oof, data.train.scores, p))
# train-CV: calibrate on half of OOF, evaluate on the other half
rng = np.random.default_rng(0)
half = rng.permutation(len(data.train)) % 2 == 0
for name, f in (("oof raw", None), ("oof platt", platt), ("oof isotonic", iso)):
    res = []
    for a, b in ((half, ~half), (~half, half)):
        sub = data.train.take(np.flatnonzero(b))
        pp = oof[b] if f is None else f(oof[a], data.train.scores[a], oof[b])
        res.append(H.summary(sub, pp))
    print(
        f"{name:28s} aiq {np.mean([x['aiq'] for x in res]):.4f} q0 {np.mean([x['quality'] for x in res]):.4f} cost98 {np.mean([x['cost98'] for x in res]):.3f}",
        flush=True,
    )
# (c) pairs all, 3 seeds
for task in ("all", "mmlu", "gsm8k"):
    sub = H.pair_subset(data.pool, task)
    vals = {"raw": [], "platt": [], "iso": []}
    for seed in range(3):
        tr, te = sub.split(0.5, seed=seed)
        a, b = vec.of(EMB, tr.prompts), vec.of(EMB, te.prompts)
        o = out_of_fold(lambda: H.build("mf", seed=seed), a, tr, folds=5)
        rr = H.build("mf", seed=seed)
        rr.fit(a, tr.scores, tr.models, tr.prompts)
        pp = rr.predict_embeddings(b, te.prompts)
        vals["raw"].append(H.apgr(te, pp))
        vals["platt"].append(H.apgr(te, platt(o, tr.scores, pp)))
        vals["iso"].append(H.apgr(te, iso(o, tr.scores, pp)))
    print(task, {k: f"{np.mean(v):.4f}±{np.std(v):.3f}" for k, v in vals.items()}, flush=True)
print("done", time.time() - t0)
