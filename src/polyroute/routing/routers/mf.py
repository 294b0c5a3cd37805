"""``mf``: quality = σ(prompt tower(x) · model vector + model bias); every model is a vector.

Matrix factorisation of the (prompt × model) quality table, as in IRT and EmbedLLM: a tower
shared by every model turns the prompt embedding into a ``dim``-d vector (one ReLU layer,
then a linear projection), and each model is a learned ``dim``-d vector plus a bias. The
predicted quality of model j on prompt x is ``σ(tower(x) · v_j + c_j)``.

Why this shape: the prompt side no longer belongs to any model, so a model the router never
saw is scored once it has a vector, and finding that vector is a logistic regression on the
frozen tower with ``dim + 1`` unknowns (:meth:`MFRouter.add_model`) — seconds, not a
retraining. With ``dim`` at least the number of models it is exactly as expressive as
``mlp`` (whose output layer is a rank-m matrix anyway), and it is trained the same way:
masked binary cross-entropy (fractional scores as they are), Adam, weight decay, early
stopping on a held-out tenth, an ensemble of seeds.

A new model's vector is the maximum a posteriori estimate under a Gaussian prior fitted to
the known models' (vector, bias) pairs: their mean, and their covariance (plus a little
isotropic variance). With no data the vector *is* the mean; with a few anchor prompts it
moves mostly along the directions in which the known models differ, so three prompts cannot
throw it far; with many it follows the data. :meth:`MFRouter.add_prior` gives a model with no
data a prior vector (a price-weighted mix of the known models) and records it in
:attr:`~polyroute.routing.routers.learned.LearnedRouter.priors`.

Fifty binary scores say little about a model's overall level (±0.07 of accuracy from the
draw of prompts alone), and the level is what decides whether a router picks it. So when the
known models' own scores on the anchors are at hand (the anchor pool keeps them), the fit
reads the newcomer's answers *against theirs*: each anchor gets an offset, the logit by which
the known models did better (or worse) on it than the router predicts (the posterior mode
under N(0, sd²)), and the newcomer is fitted as ``σ(z · v + c + offset)``, the offset
dropped at serving time. Anchors that happened to be easy for everyone then no longer pass
for a strong newcomer (a control variate, as in paired comparisons of models on shared
questions). How large the offsets may be is not a setting to tune: the known models' scores
on the anchors say it, as the sd that makes them most likely (the marginal likelihood of a
per-prompt random effect; about 1.5 on LLMRouter's data). That fit, prior and offsets
included, is :mod:`polyroute.routing.routers.mf_newcomer`; the network and its training,
:mod:`polyroute.routing.routers.mf_tower`.

**The wide term.** The tower reads a dense embedding through a 128-unit layer, which keeps
only so much of the prompt's wording. ``wide_bits`` > 0 adds a linear term over the prompt's
hashed word 1-2-grams and character 3-5-grams (:mod:`polyroute.embeddings.ngrams`, 2^bits
buckets each): ``tower(x) = deep(x) + s(text) · W_s``, W_s (2^(bits+1) × dim) starting at
zero and trained with the rest under its own L2 (``wide_decay``). It lands in the same
``dim``-d space as the deep part, so a new model still fits only its vector. The router then
reads the prompts' texts beside their embeddings (:attr:`reads_text`). Buckets no training
prompt hit stay exactly zero, and W_s is rounded to float16 precision once trained (it is
stored so): half the size on disk, and a loaded router predicts exactly what the trained one
did. Chosen by ``benchmarks/wide_stacking.py`` (docs/routers.md, "A wide lexical part?"):
2^16 buckets, L2 1e-5.

**Task heads** (``task_heads``, on by default). Where the training data labels each prompt's
task, they train the tower to tell the tasks apart too: each task is one more column of
targets with its own vector and bias, trained with the models' columns and dropped once
trained (the router predicts, saves and serves the models alone). Without them the tower
learns only the directions in which the training models differ, and a model added later can
use no other. The targets are softened towards 0.5 (``task_weight``: 0.5 ± 0.15 at the
default 0.3; 1 = one-hot), so that they pull on the tower less than the models do: one-hot
heads took room the models' own directions need and routed held-out data worse. Measured on
LLMRouter's data (docs/routers.md, "With task heads"): with 50 anchors a model added later
keeps 91% of the full router's gain in quality at the best model's cost (93% of AIQ),
against 83% (90%) without heads, and the test split routes better (quality at the best
model's cost 0.623 against 0.612). ``polyroute train --no-task-heads`` trains without them;
data with fewer than two tasks trains without them either way.

``prior_strength`` scales the prior's precision. ``polyroute train`` chooses it for the router
it builds by simulating onboarding on its own training models
(:mod:`polyroute.routing_eval.onboard_tuning`); the default here is for a router built
otherwise. ``prompt_offset_sd`` fixes the offsets' sd instead of estimating it (0: none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import threadpoolctl  # type: ignore[import-untyped]
from numpy.typing import NDArray

from polyroute.embeddings.base import Embedder, Float32Array
from polyroute.embeddings.ngrams import NGRAMS_FINGERPRINT, ngram_features, width
from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.learned import LearnedRouter, check_finite
from polyroute.routing.routers.mf_newcomer import fit_member
from polyroute.routing.routers.mf_tower import Inputs, probabilities, tower, train_factorised
from polyroute.routing.routers.training import (
    TrainingOptions,
    checked_input,
    ensemble_from_state,
    ensemble_state,
    fit_ensemble,
)
from polyroute.routing.tradeoff import FloatArray

#: ``prior_strength`` of a router not built by ``polyroute train`` (and the strength its
#: simulated choice keeps unless another clearly does better).
DEFAULT_PRIOR_STRENGTH = 3.0
#: Task heads' targets are 0.5 ± this / 2 (module doc, "Task heads"): 1 would be one-hot.
DEFAULT_TASK_WEIGHT = 0.3


@ROUTERS.register("mf")
class MFRouter(LearnedRouter):
    """A shared prompt tower and one learned (vector, bias) per model; an ensemble of seeds."""

    kind = "mf"

    def __init__(
        self,
        name: str = "mf",
        *,
        hidden: int = 128,
        dim: int = 16,
        ensemble: int = 3,
        weight_decay: float = 1e-4,
        prior_strength: float = DEFAULT_PRIOR_STRENGTH,
        prompt_offset_sd: float | None = None,
        wide_bits: int = 16,
        wide_decay: float = 1e-5,
        task_heads: bool = True,
        task_weight: float = DEFAULT_TASK_WEIGHT,
        seed: int = 0,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(name, embedder=embedder)
        if hidden < 1 or dim < 1 or ensemble < 1:
            raise ValueError("hidden, dim and ensemble must be >= 1")
        if not 0 <= wide_bits <= 20:
            raise ValueError(f"wide_bits must be in 0..20 (0: no wide term), got {wide_bits}")
        if not (math.isfinite(wide_decay) and wide_decay >= 0):
            raise ValueError(f"wide_decay must be >= 0, got {wide_decay}")
        if not (math.isfinite(prior_strength) and prior_strength > 0):
            raise ValueError(f"prior_strength must be > 0, got {prior_strength}")
        if prompt_offset_sd is not None and not (
            math.isfinite(prompt_offset_sd) and prompt_offset_sd >= 0
        ):
            raise ValueError(f"prompt_offset_sd must be >= 0, got {prompt_offset_sd}")
        if not (math.isfinite(task_weight) and 0 < task_weight <= 1):
            raise ValueError(f"task_weight must be in (0, 1], got {task_weight}")
        self.hidden = hidden
        self.dim = dim
        self.ensemble = ensemble
        self.weight_decay = weight_decay
        self.prior_strength = prior_strength
        self.prompt_offset_sd = prompt_offset_sd
        self.wide_bits = wide_bits
        self.wide_decay = wide_decay
        self.task_heads = task_heads
        self.task_weight = task_weight
        self.seed = seed
        self._nets: list[dict[str, FloatArray]] = []

    def params(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "dim": self.dim,
            "ensemble": self.ensemble,
            "weight_decay": self.weight_decay,
            "prior_strength": self.prior_strength,
            "prompt_offset_sd": self.prompt_offset_sd,
            "wide_bits": self.wide_bits,
            "wide_decay": self.wide_decay,
            "task_heads": self.task_heads,
            "task_weight": self.task_weight,
            "seed": self.seed,
        }

    @property
    def reads_text(self) -> bool:
        return self.wide_bits > 0

    # -- learning -------------------------------------------------------------------------

    def _fit(
        self,
        embeddings: Float32Array,
        scores: FloatArray,
        texts: Sequence[str] | None,
        tasks: FloatArray | None = None,
    ) -> None:
        options = TrainingOptions(hidden=self.hidden, weight_decay=self.weight_decay)
        x = Inputs(embeddings.astype(np.float32), self._ngrams(texts, embeddings.shape[0]))
        m = scores.shape[1]
        # Task heads (module doc): the task columns are trained as if they were models, then
        # dropped; only the tower keeps what they taught it.
        # task_weight softens their targets towards 0.5, so they pull on the tower less than
        # the models' own columns do.
        y = scores
        if tasks is not None and self.task_heads:
            y = np.hstack([scores, 0.5 + (tasks - 0.5) * self.task_weight])
        self._nets = fit_ensemble(
            lambda rng: train_factorised(x, y, options, self.dim, rng, self.wide_decay),
            seed=self.seed,
            members=self.ensemble,
        )
        for net in self._nets:
            net["v"] = np.ascontiguousarray(net["v"][:, :m])
            net["c"] = np.ascontiguousarray(net["c"][:m])
            if "ws" in net:  # stored as float16: keep exactly what a reload will read
                net["ws"] = net["ws"].astype(np.float16).astype(np.float32)
        self.priors = {}

    def _ngrams(self, texts: Sequence[str] | None, rows: int) -> Any:
        """The texts' n-gram rows (:mod:`polyroute.embeddings.ngrams`), or None without a
        wide term."""
        read = self.checked_texts(texts, rows)
        return None if read is None else ngram_features(read, self.wide_bits)

    def state(self) -> dict[str, NDArray[Any]]:
        arrays = ensemble_state(self._nets)
        for key in [k for k in arrays if k.endswith(".ws")]:
            arrays[key] = arrays[key].astype(np.float16)
        if self.wide_bits:
            arrays["ngrams_recipe"] = np.frombuffer(NGRAMS_FINGERPRINT.encode(), dtype=np.uint8)
        return arrays

    def load_state(self, arrays: Mapping[str, NDArray[Any]]) -> None:
        nets = {k: v for k, v in arrays.items() if k != "ngrams_recipe"}
        if "ngrams_recipe" not in arrays and not any(k.endswith(".ws") for k in arrays):
            # Saved before mf had a wide term (its manifest has no wide_bits): it has none.
            self.wide_bits = 0
        if self.wide_bits:
            recipe = arrays.get("ngrams_recipe")
            if recipe is None or bytes(np.asarray(recipe, np.uint8)).decode() != NGRAMS_FINGERPRINT:
                raise ValueError(
                    "this mf router's n-gram features were made by another recipe than this "
                    "polyroute's (embeddings/ngrams.py): retrain it with `polyroute train`"
                )
        self._nets = ensemble_from_state(nets)
        wide = width(self.wide_bits) if self.wide_bits else 0
        for net in self._nets:
            if (net["ws"].shape[0] if "ws" in net else 0) != wide:
                raise ValueError(f"the saved wide term does not have {wide} rows (wide_bits)")

    def predict_embeddings(
        self, embeddings: Float32Array, texts: Sequence[str] | None = None
    ) -> FloatArray:
        x = self._inputs(embeddings, texts)
        total = sum(probabilities(net, tower(net, x)) for net in self._nets)
        return check_finite(
            np.asarray(total, dtype=np.float64) / len(self._nets), f"mf router {self.name!r}"
        )

    def _inputs(self, embeddings: Float32Array, texts: Sequence[str] | None) -> Inputs:
        x = checked_input(self._nets, embeddings)
        return Inputs(x, self._ngrams(texts, x.shape[0]))

    # -- new models -----------------------------------------------------------------------

    def model_vectors(self) -> list[FloatArray]:
        """Per ensemble member, the (models, dim + 1) matrix of [vector, bias] rows."""
        return [np.hstack([net["v"].T, net["c"][:, None]]).astype(np.float64) for net in self._nets]

    def add_model(
        self,
        name: str,
        embeddings: Float32Array,
        scores: FloatArray,
        price: tuple[float, float] | None = None,
        known: Mapping[str, FloatArray] | None = None,
        texts: Sequence[str] | None = None,
    ) -> int:
        """Fit ``name``'s vector and bias from its ``scores`` (n,; NaN = unknown) on prompts
        with ``embeddings`` (n, dim) (and ``texts``, for a router that :attr:`reads_text`),
        the rest of the router frozen; returns the prompts used.

        ``known`` maps some of the router's models to their own scores on the same prompts
        (NaN = unknown): the fit then reads ``scores`` against theirs (module doc). A model
        already known is refitted (a prior becomes a fitted vector). The fit is the
        posterior mode under the known models' prior (module doc), so few prompts move it
        little. The knob's λ is kept: it is in quality points per USD, the same for any model.
        """
        x = np.asarray(embeddings, dtype=np.float32)
        y = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not self._nets:
            raise ValueError("the router is not trained")
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"embeddings {x.shape} and scores {y.shape} do not match")
        mask = np.isfinite(y)
        if not mask.any():
            raise ValueError(f"no score for {name}: cannot fit its vector")
        if (y[mask] < 0).any() or (y[mask] > 1).any():
            raise ValueError("scores must lie in [0, 1]")
        read = self.checked_texts(texts, len(y))
        kept = None if read is None else [t for t, keep in zip(read, mask, strict=True) if keep]
        reference = self._reference_columns(exclude=name)
        peers, peer_scores = self._peer_scores(known or {}, reference, len(y))
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            rows = [
                fit_member(
                    z,
                    u,
                    reference,
                    y[mask],
                    peers=peers,
                    peer_scores=peer_scores[mask],
                    prior_strength=self.prior_strength,
                    offset_sd=self.prompt_offset_sd,
                )
                for z, u in zip(self.features(x[mask], kept), self.model_vectors(), strict=True)
            ]
        self._set_column(name, rows)
        self.priors.pop(name, None)
        if price is not None:
            self.prices[name] = (float(price[0]), float(price[1]))
        return int(mask.sum())

    def features(
        self, embeddings: Float32Array, texts: Sequence[str] | None = None
    ) -> list[FloatArray]:
        """Per ensemble member, the tower's output on ``embeddings`` (n, dim) (and ``texts``):
        what a model's vector is multiplied with."""
        x = self._inputs(embeddings, texts)
        return [np.asarray(tower(net, x), dtype=np.float64) for net in self._nets]

    def _peer_scores(
        self, known: Mapping[str, FloatArray], reference: list[int], n: int
    ) -> tuple[list[int], FloatArray]:
        """The columns of the reference models ``known`` scores, and those scores (n, k)."""
        peers = [j for j in reference if self.models[j] in known]
        columns = []
        for j in peers:
            column = np.asarray(known[self.models[j]], dtype=np.float64).reshape(-1)
            if column.shape != (n,):
                raise ValueError(f"{self.models[j]}'s known scores do not match the prompts")
            columns.append(column)
        table = np.column_stack(columns) if columns else np.empty((n, 0))
        return peers, table

    def add_prior(
        self, name: str, input_price: float | None = None, output_price: float | None = None
    ) -> str:
        """Give ``name`` (no data yet) a prior vector; returns how it was made (also kept in
        :attr:`priors`, which the routing decision's reason quotes).

        With a price, and known models with prices, the prior is a mix of the known models'
        vectors weighted by closeness in log price (a model costing what 70b models cost is
        more likely to answer like them); otherwise the known models' mean.
        """
        if not self._nets:
            raise ValueError("the router is not trained")
        reference = self._reference_columns(exclude=name)
        weights, how = self._price_weights(reference, input_price, output_price)
        rows = [weights @ u[reference] for u in self.model_vectors()]
        self._set_column(name, rows)
        self.priors[name] = how
        if input_price is not None and output_price is not None:
            self.prices[name] = (float(input_price), float(output_price))
        return how

    def _reference_columns(self, exclude: str) -> list[int]:
        """The models a prior is made from: those fitted on data (not priors), less ``exclude``."""
        cols = [j for j, m in enumerate(self.models) if m != exclude and m not in self.priors]
        if not cols:
            raise ValueError("no model fitted on data to base a new model on")
        return cols

    def _price_weights(
        self, cols: list[int], input_price: float | None, output_price: float | None
    ) -> tuple[FloatArray, str]:
        names = [self.models[j] for j in cols]
        priced = [
            i
            for i, m in enumerate(names)
            if m in self.prices and _blend(*self.prices[m]) > 0 and input_price is not None
        ]
        if input_price is None or output_price is None or not priced:
            return np.full(len(cols), 1.0 / len(cols)), f"mean of {len(cols)} known models"
        target = _blend(input_price, output_price)
        if target <= 0:
            return np.full(len(cols), 1.0 / len(cols)), f"mean of {len(cols)} known models"
        distance = np.array([math.log(target / _blend(*self.prices[names[i]])) for i in priced])
        w = np.exp(-0.5 * distance**2)  # one factor e in price: weight e^-0.5
        w /= w.sum()
        weights = np.zeros(len(cols))
        weights[priced] = w
        top = sorted(zip(w, (names[i] for i in priced), strict=True), reverse=True)[:3]
        mix = ", ".join(f"{n} {share:.0%}" for share, n in top if share >= 0.005)
        return weights, f"price-weighted mix of known models ({mix})"

    def _set_column(self, name: str, rows: list[FloatArray]) -> None:
        """Write ``name``'s [vector, bias] in every member, appending a column if it is new."""
        if name in self.models:
            j = self.models.index(name)
            for net, row in zip(self._nets, rows, strict=True):
                net["v"][:, j] = row[:-1]
                net["c"][j] = row[-1]
            return
        for net, row in zip(self._nets, rows, strict=True):
            net["v"] = np.hstack([net["v"], row[:-1, None].astype(np.float32)])
            net["c"] = np.append(net["c"], np.float32(row[-1]))
        self.models.append(name)


def _blend(input_price: float, output_price: float) -> float:
    """One price per model, to compare models by: the mean of input and output prices."""
    return (float(input_price) + float(output_price)) / 2
