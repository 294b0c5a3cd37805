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
    python benchmarks/onboarding.py --protocol cv --no-tune --params '{"wide_bits": 0}'
    python benchmarks/onboarding.py --protocol cv --cache /tmp/lomo   # again: no training
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import pickle
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


class Fits:
    """Trains the mf routers a run needs, with ``params``; with a ``cache`` folder, keeps
    each one there (pickled, keyed by its training rows, models, seed and params), so a
    second run that changes only how models are added skips the training (most of the
    time: 5 folds × 46 fits)."""

    def __init__(self, params: dict[str, object], cache: Path | None) -> None:
        self.params, self.cache = params, cache
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)

    def __call__(self, data: RoutingDataset, x: np.ndarray, keep: list[str], seed: int) -> MFRouter:
        models = list(data.models)
        # the router's own settings, defaults included: a cache made before a default
        # changed is not read as if it had been made after
        settings = MFRouter(seed=seed, **self.params).params()  # type: ignore[arg-type]
        key = json.dumps([list(data.ids), keep, seed, settings], sort_keys=True, default=str)
        path = None
        if self.cache is not None:
            digest = hashlib.sha256(key.encode()).hexdigest()[:20]
            path = self.cache / f"mf-{digest}.pkl"
            if path.exists():
                with path.open("rb") as f:
                    loaded: MFRouter = pickle.load(f)
                return loaded
        router = MFRouter(seed=seed, **self.params)  # type: ignore[arg-type]
        scores = data.scores[:, [models.index(m) for m in keep]]
        router.fit(x, scores, keep, list(data.prompts), list(data.tasks))
        if path is not None:
            partial = path.with_suffix(".tmp")
            with partial.open("wb") as f:
                pickle.dump(router, f, protocol=pickle.HIGHEST_PROTOCOL)
            partial.replace(path)
        return router


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
    fits: Fits,
    tune: bool = True,
) -> tuple[FloatArray, Predictions]:
    """The full router's predictions on ``x_eval`` and, per variant and left-out model, the
    variant's (module doc). Without ``tune``, no simulation: *N anchors* is at the router's
    default strength (and *N s=3* is not repeated)."""
    models = list(train.models)
    texts = list(train.prompts)
    full = fits(train, x_train, models, seed)
    out: Predictions = {}
    rng = np.random.default_rng(seed)
    row_of = {id_: i for i, id_ in enumerate(train.ids)}
    lesser: dict[frozenset[str], MFRouter] = {}  # 7-model routers, shared by two 8-model ones

    def trained_without(left: frozenset[str]) -> MFRouter:
        if left not in lesser:
            lesser[left] = fits(train, x_train, [m for m in models if m not in left], seed)
        return lesser[left]

    for name in names:
        j = models.index(name)
        others = [m for m in models if m != name]
        without = fits(train, x_train, others, seed)
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
        tuned = copy.deepcopy(without)
        if tune:
            choice = tune_onboarding(
                without, x_train, train.scores[:, cols], train.costs[:, cols], pool_rows,
                texts=texts, seed=seed,
                without=lambda k, n=name, o=others: trained_without(frozenset((n, o[k]))),
            )  # fmt: skip
            assert choice is not None
            CHOICES.append((name, choice.prior_strength))
            print(f"    {name}: strength {choice.prior_strength:g}, kept {choice.kept}", flush=True)
            tuned.prior_strength = choice.prior_strength
            # the rule before the one-standard-error guard: the best mean, however close
            argmax = copy.deepcopy(without)
            argmax.prior_strength = float(max(choice.kept, key=choice.kept.__getitem__))
        picks: dict[str, list[int]] = {}
        for n in counts:
            picks[f"{n} anchors"] = [row_of[r["id"]] for r in choose_anchors(pool, n)]
            if tune:
                picks[f"{n} s=3"] = picks[f"{n} anchors"]
                picks[f"{n} argmax"] = picks[f"{n} anchors"]
            picks[f"{n} before"] = picks[f"{n} anchors"]
            if control:
                picks[f"{n} random"] = [int(i) for i in rng.choice(len(train), n, replace=False)]
        picks["all data"] = list(range(len(train)))
        for variant, rows in picks.items():
            before = variant.endswith("before")
            base = argmax if variant.endswith("argmax") else tuned
            added = copy.deepcopy(without if before or variant.endswith("s=3") else base)
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
    parser.add_argument(
        "--no-tune", action="store_true",
        help="No simulated choice of the prior strength (the 7-model routers it trains are "
        "4/5 of the run's time): N anchors at the router's default strength.",
    )  # fmt: skip
    parser.add_argument(
        "--params", type=json.loads, default={},
        help='MFRouter settings as JSON, e.g. \'{"wide_bits": 0}\' [default: its defaults].',
    )  # fmt: skip
    parser.add_argument(
        "--cache", type=Path,
        help="Keep trained routers here and reuse them (a run that changes only onboarding).",
    )  # fmt: skip
    parser.add_argument(
        "--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5],
        help="cv: run only these of the 5 folds (evaluated on their held-out prompts).",
    )  # fmt: skip
    parser.add_argument(
        "--full-only", action="store_true",
        help="cv: train and report only the full router (seed 0's folds, trained with --seed).",
    )  # fmt: skip
    parser.add_argument(
        "--save", type=Path, help="Also write the predictions here (.npz), for --merge."
    )
    parser.add_argument(
        "--merge", type=Path, nargs="+",
        help="Report on predictions saved by runs of disjoint --folds, run nothing.",
    )  # fmt: skip
    args = parser.parse_args()
    fits = Fits(args.params, args.cache)
    print("$ python benchmarks/onboarding.py " + shlex.join(sys.argv[1:]), flush=True)
    started = time.perf_counter()
    train, test = load(args.data)
    models = list(train.models)
    names = args.models or models
    if args.merge:
        rows, full, preds = merged(args.merge)
        report(train.take(rows), full, preds, names)
        return
    embedder = CachedEmbedder(get_embedder("minilm-static"), default_cache_dir())
    x_train = embedder.embed(train.prompts)
    if args.protocol == "test":
        print(f"train {len(train)} prompts, test {len(test)} (de-duplicated), {len(models)} models")
        if args.save:
            raise SystemExit("--save is for --protocol cv")
        full, preds = leave_one_out(
            train, x_train, embedder.embed(test.prompts), names, args.counts,
            eval_texts=list(test.prompts), seed=args.seed, control=not args.no_random,
            fits=fits, tune=not args.no_tune,
        )  # fmt: skip
        evaluated = test
    else:
        print(f"5-fold cross-validation on train: {len(train)} prompts, {len(models)} models")
        # --full-only: the folds of seed 0, only the training seed moves
        fold = folds_of(train, 5, 0 if args.full_only else args.seed)
        full = np.full(train.scores.shape, np.nan)
        preds = {}
        for f in [f - 1 for f in args.folds]:
            t0 = time.perf_counter()
            fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            if args.full_only:
                router = fits(train.take(fit), x_train[fit], models, args.seed)
                held_texts = [train.prompts[i] for i in held]
                full[held] = in_order(router, models, x_train[held], held_texts)
                continue
            f_full, f_preds = leave_one_out(
                train.take(fit), x_train[fit], x_train[held], names, args.counts,
                eval_texts=[train.prompts[i] for i in held], seed=args.seed,
                control=not args.no_random, fits=fits, tune=not args.no_tune,
            )  # fmt: skip
            full[held] = f_full
            for variant, by_model in f_preds.items():
                for name, p in by_model.items():
                    preds.setdefault(variant, {}).setdefault(
                        name, np.full(train.scores.shape, np.nan)
                    )
                    preds[variant][name][held] = p
            print(f"  fold {f + 1}/5 done ({time.perf_counter() - t0:.0f} s)", flush=True)
        rows = np.flatnonzero(np.isin(fold, [f - 1 for f in args.folds]))
        evaluated = train.take(rows)
        full = full[rows]
        preds = {v: {n: p[rows] for n, p in by.items()} for v, by in preds.items()}
        if args.full_only:
            q, aiq, base = figures(evaluated, full)
            print(
                f"full router, seed {args.seed}: quality at the best model's cost {q:.4f}, "
                f"AIQ {aiq:.4f} (best single model {base['best_quality']:.4f})"
            )
            return
        if args.save:
            np.savez_compressed(
                args.save, rows=rows, full=full,
                **{f"{v}|{n}": p for v, by in preds.items() for n, p in by.items()},
            )  # fmt: skip
    report(evaluated, full, preds, names)
    if CHOICES:
        print("\nprior strength chosen by simulated onboarding of the 8 known models, per fold:")
    for name in names if CHOICES else []:
        chosen = [f"{s:g}" for m, s in CHOICES if m == name]
        print(f"  {name:32} {', '.join(chosen)}")
    print(f"\n{time.perf_counter() - started:.0f} s in all")


def merged(paths: list[Path]) -> tuple[np.ndarray, FloatArray, Predictions]:
    """The rows, full router's and variants' predictions of runs saved with ``--save``."""
    parts = [np.load(p) for p in paths]
    rows = np.concatenate([part["rows"] for part in parts])
    if len(set(rows.tolist())) != len(rows):
        raise SystemExit("--merge: the runs' folds overlap")
    full = np.vstack([part["full"] for part in parts])
    preds: Predictions = {}
    for key in parts[0].files:
        if "|" in key:
            variant, name = key.split("|", 1)
            preds.setdefault(variant, {})[name] = np.vstack([part[key] for part in parts])
    return rows, full, preds


def report(
    evaluated: RoutingDataset, full: FloatArray, preds: Predictions, names: list[str]
) -> None:
    """Print the per-model and mean tables (module doc)."""
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


if __name__ == "__main__":
    main()
