"""Cold start by probing, leave-one-model-out: what do 25-100 anchors recover of a model's value?

Data: LLMRouter's ``train.json`` (5,608 prompts) and ``test.json`` less the questions also in
train (381), 9 models; costs from ``default_llm.json`` prices × MiniLM token count + 256
output tokens (:mod:`polyroute.routing_eval.costs`); the static embedding (``minilm-static``),
cached in the CLI's cache (the first run embeds 6,000 prompts: a few seconds).

For each of the 9 models M, with ``mf`` routers:

- **full**: trained with every model's data (the same router for every M);
- **without**: trained on the other 8 models only (M is never chosen);
- **prior**: *without* plus M from :meth:`MFRouter.add_prior` (no data: the mean vector);
- **N anchors** (N = 25, 50, 100): *without* plus M from :meth:`MFRouter.add_model` on M's
  true scores on the first N prompts of the anchor pool
  (:func:`polyroute.routing_eval.anchors.anchor_pool`, ranked on *without*'s predictions),
  read against the 8 known models' scores on them (the pool keeps them; the offsets' sd
  estimated from them), with the prior strength that ``polyroute train`` would choose for
  *without*: simulated onboarding of each of its 8 models in turn into a router trained
  without it (:func:`polyroute.routing_eval.onboard_tuning.tune_onboarding`), never M;
- **N s=3**: the same with the strength fixed at 3 (the default of a router not built by
  ``polyroute train``), to show what the simulated choice gains or loses;
- **N before**: the same anchors, fitted as before offsets existed (prior strength 3, no
  offsets): the baseline, measured in the same run;
- **N random**: as *N anchors* from N training prompts drawn at random (a control);
- **all data**: *without* plus M fitted on all of M's training scores (frozen tower): what
  onboarding could reach with unlimited anchors.

Two protocols: ``test`` trains on train and evaluates on the de-duplicated test set (381
prompts); ``cv`` runs the same 5 times, training on 4/5 of train and predicting the other
fifth, and evaluates the pooled out-of-fold predictions on all 5,608 prompts (the gains over
the best model are a point or two of quality, which 381 prompts cannot resolve well).

Figures (:func:`polyroute.routing_eval.evaluate.evaluate`): quality at the best single
model's cost, AIQ, and the *share of the full router's gain it keeps*,
``(x − baseline) / (full − baseline)``, the baseline being the best single model's quality
(for quality at its cost) or the random mix of models' AIQ (for AIQ); per model, then the
mean of the 9 shares and the share of the mean gain.

Usage::

    python benchmarks/onboarding.py                      # test protocol, ~2 min
    python benchmarks/onboarding.py --protocol cv        # 5 folds, ~30 min on 2 busy cores
    python benchmarks/onboarding.py --counts 50 --models gemma-2-9b-it
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polyroute.cli.routing import default_cache_dir  # noqa: E402
from polyroute.embeddings.base import CachedEmbedder  # noqa: E402
from polyroute.embeddings.registry import get_embedder  # noqa: E402
from polyroute.routing.routers.mf import MFRouter  # noqa: E402
from polyroute.routing.tradeoff import FloatArray  # noqa: E402
from polyroute.routing_eval.anchors import anchor_pool, choose_anchors  # noqa: E402
from polyroute.routing_eval.dataset import RoutingDataset, prompt_key  # noqa: E402
from polyroute.routing_eval.evaluate import evaluate  # noqa: E402
from polyroute.routing_eval.importers import import_dataset  # noqa: E402
from polyroute.routing_eval.onboard_tuning import tune_onboarding  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "llmrouter" / "data"
Predictions = dict[str, dict[str, FloatArray]]  # variant → left-out model → (n, 9)
#: (left-out model, prior_strength) chosen for each 8-model router.
CHOICES: list[tuple[str, float]] = []


def load(data: Path) -> tuple[RoutingDataset, RoutingDataset]:
    pre = data / "dcrouter_preprocessed"
    train, _ = import_dataset("llmrouter", pre / "train.json")
    test, _ = import_dataset("llmrouter", pre / "test.json")
    train = train.dedupe()
    test = test.dedupe().without_prompts_in(train).subset_models(train.models)
    return train, test


def figures(test: RoutingDataset, predicted: FloatArray) -> tuple[float, float, dict[str, float]]:
    """(quality at the best model's cost, AIQ, baselines) of routing ``test`` on ``predicted``."""
    report = evaluate(test, predicted)
    q = report["router"]["quality_at_best_model_cost"]
    base = {"best_quality": report["best_model"]["quality"], "mix_aiq": report["random"]["aiq"]}
    return (float("nan") if q is None else float(q)), float(report["router"]["aiq"]), base


def in_order(router: MFRouter, models: list[str], x: np.ndarray, texts: list[str]) -> FloatArray:
    """The router's predictions with columns in ``models``' order."""
    p = router.predict_embeddings(x, texts)
    return p[:, [router.models.index(m) for m in models]]


def leave_one_out(
    train: RoutingDataset,
    x_train: np.ndarray,
    x_eval: np.ndarray,
    names: list[str],
    counts: list[int],
    *,
    eval_texts: list[str],
    seed: int,
    control: bool,
) -> tuple[FloatArray, Predictions]:
    """The full router's predictions on ``x_eval`` and, per variant and left-out model, the
    variant's (module doc)."""
    models = list(train.models)
    texts = list(train.prompts)
    full = MFRouter(seed=seed)
    full.fit(x_train, train.scores, models, texts)
    out: Predictions = {}
    rng = np.random.default_rng(seed)
    row_of = {id_: i for i, id_ in enumerate(train.ids)}
    lesser: dict[frozenset[str], MFRouter] = {}  # 7-model routers, shared by two 8-model ones

    def trained_without(left: frozenset[str]) -> MFRouter:
        if left not in lesser:
            keep = [m for m in models if m not in left]
            lesser[left] = MFRouter(seed=seed)
            lesser[left].fit(x_train, train.scores[:, [models.index(m) for m in keep]], keep, texts)
        return lesser[left]

    for name in names:
        j = models.index(name)
        others = [m for m in models if m != name]
        without = MFRouter(seed=seed)
        without.fit(x_train, train.scores[:, [models.index(m) for m in others]], others, texts)
        p = np.zeros((len(x_eval), len(models)))  # M's column 0: never chosen
        p[:, [models.index(m) for m in others]] = without.predict_embeddings(x_eval, eval_texts)
        out.setdefault("without", {})[name] = p
        prior = copy.deepcopy(without)
        prior.add_prior(name)
        out.setdefault("prior", {})[name] = in_order(prior, models, x_eval, eval_texts)
        # Ranked on the 8-model router's predictions (train_router uses out-of-fold ones).
        seen = without.predict_embeddings(x_train, texts)
        pool = anchor_pool(train.subset_models(others), predicted=seen, seed=seed)
        pool_rows = [row_of[r["id"]] for r in pool]
        cols = [models.index(m) for m in others]
        assert train.costs is not None
        choice = tune_onboarding(
            without, x_train, train.scores[:, cols], train.costs[:, cols], pool_rows,
            texts=texts, seed=seed,
            without=lambda k, n=name, o=others: trained_without(frozenset((n, o[k]))),
        )  # fmt: skip
        assert choice is not None
        CHOICES.append((name, choice.prior_strength))
        tuned = copy.deepcopy(without)
        tuned.prior_strength = choice.prior_strength
        picks: dict[str, list[int]] = {}
        for n in counts:
            picks[f"{n} anchors"] = [row_of[r["id"]] for r in choose_anchors(pool, n)]
            picks[f"{n} s=3"] = picks[f"{n} anchors"]
            picks[f"{n} before"] = picks[f"{n} anchors"]
            if control:
                picks[f"{n} random"] = [int(i) for i in rng.choice(len(train), n, replace=False)]
        picks["all data"] = list(range(len(train)))
        for variant, rows in picks.items():
            before = variant.endswith("before")
            added = copy.deepcopy(without if before or variant.endswith("s=3") else tuned)
            if before:
                added.prior_strength, added.prompt_offset_sd = 3.0, 0.0
            known = {m: train.scores[rows, models.index(m)] for m in others}
            added.add_model(
                name, x_train[rows], train.scores[rows, j], known=known,
                texts=[texts[i] for i in rows],
            )  # fmt: skip
            out.setdefault(variant, {})[name] = in_order(added, models, x_eval, eval_texts)
    return in_order(full, models, x_eval, eval_texts), out


def folds_of(dataset: RoutingDataset, k: int, seed: int) -> np.ndarray:
    """A fold per row; rows with the same prompt text share one (as ``train.out_of_fold``)."""
    groups: dict[str, int] = {}
    group = np.array([groups.setdefault(prompt_key(p), len(groups)) for p in dataset.prompts])
    return (np.random.default_rng(seed).permutation(len(groups)) % k)[group]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--protocol", choices=["test", "cv"], default="test")
    parser.add_argument("--counts", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--models", nargs="+", help="Leave out only these [default: each].")
    parser.add_argument("--seed", type=int, default=0, help="Training and sampling seed.")
    parser.add_argument("--no-random", action="store_true", help="Skip the random control.")
    args = parser.parse_args()
    print("$ python benchmarks/onboarding.py " + shlex.join(sys.argv[1:]), flush=True)
    started = time.perf_counter()
    train, test = load(args.data)
    models = list(train.models)
    names = args.models or models
    embedder = CachedEmbedder(get_embedder("minilm-static"), default_cache_dir())
    x_train = embedder.embed(train.prompts)
    if args.protocol == "test":
        print(f"train {len(train)} prompts, test {len(test)} (de-duplicated), {len(models)} models")
        full, preds = leave_one_out(
            train, x_train, embedder.embed(test.prompts), names, args.counts,
            eval_texts=list(test.prompts), seed=args.seed, control=not args.no_random,
        )  # fmt: skip
        evaluated = test
    else:
        print(f"5-fold cross-validation on train: {len(train)} prompts, {len(models)} models")
        fold = folds_of(train, 5, args.seed)
        full = np.empty(train.scores.shape)
        preds = {}
        for f in range(5):
            t0 = time.perf_counter()
            fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            f_full, f_preds = leave_one_out(
                train.take(fit), x_train[fit], x_train[held], names, args.counts,
                eval_texts=[train.prompts[i] for i in held], seed=args.seed,
                control=not args.no_random,
            )  # fmt: skip
            full[held] = f_full
            for variant, by_model in f_preds.items():
                for name, p in by_model.items():
                    preds.setdefault(variant, {}).setdefault(name, np.empty(train.scores.shape))
                    preds[variant][name][held] = p
            print(f"  fold {f + 1}/5 done ({time.perf_counter() - t0:.0f} s)", flush=True)
        evaluated = train
    full_q, full_aiq, base = figures(evaluated, full)
    best_q, mix_aiq = base["best_quality"], base["mix_aiq"]
    print(
        f"full router: quality at the best model's cost {full_q:.4f} (best single model "
        f"{best_q:.4f}), AIQ {full_aiq:.4f} (random mix of models {mix_aiq:.4f})\n"
    )
    head = f"{'left out':32} {'variant':12} {'q@best':>7} {'AIQ':>7}"
    print(f"{head} {'kept: q@best':>13} {'AIQ':>5}")
    table: dict[str, list[tuple[float, float]]] = {v: [] for v in preds}
    for name in names:
        for variant, by_model in preds.items():
            q, aiq, _ = figures(evaluated, by_model[name])
            table[variant].append((q, aiq))
            kept_q = (q - best_q) / (full_q - best_q)
            kept_aiq = (aiq - mix_aiq) / (full_aiq - mix_aiq)
            print(f"{name:32} {variant:12} {q:7.4f} {aiq:7.4f} {kept_q:13.0%} {kept_aiq:5.0%}")
    print(
        f"\nmean over {len(names)} left-out models; gain kept = mean of the per-model shares "
        "(share of the mean gain)"
    )
    print(f"{'variant':12} {'q@best':>7} {'AIQ':>7} {'kept: q@best':>20} {'AIQ':>12}")
    for variant, rows in table.items():
        arr = np.array(rows)
        q, aiq = arr.mean(axis=0)
        shares_q = np.mean((arr[:, 0] - best_q) / (full_q - best_q))
        shares_aiq = np.mean((arr[:, 1] - mix_aiq) / (full_aiq - mix_aiq))
        of_mean_q = (q - best_q) / (full_q - best_q)
        of_mean_aiq = (aiq - mix_aiq) / (full_aiq - mix_aiq)
        print(
            f"{variant:12} {q:7.4f} {aiq:7.4f} {shares_q:12.0%} ({of_mean_q:4.0%}) "
            f"{shares_aiq:5.0%} ({of_mean_aiq:4.0%})"
        )
    print("\nprior strength chosen by simulated onboarding of the 8 known models, per fold:")
    for name in names:
        chosen = [f"{s:g}" for m, s in CHOICES if m == name]
        print(f"  {name:32} {', '.join(chosen)}")
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
