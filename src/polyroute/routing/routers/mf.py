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
under N(0, sd²), :func:`prompt_offsets`), and the newcomer is fitted as
``σ(z · v + c + offset)``, the offset dropped at serving time. Anchors that happened to be
easy for everyone then no longer pass for a strong newcomer (a control variate, as in
paired comparisons of models on shared questions). How large the offsets may be is not a
setting to tune: the known models' scores on the anchors say it, as the sd that makes them
most likely (the marginal likelihood of a per-prompt random effect, :func:`offset_sd_by_evidence`;
about 1.5 on LLMRouter's data).

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import threadpoolctl  # type: ignore[import-untyped]
from numpy.typing import NDArray

from polyroute.embeddings.base import Embedder, Float32Array
from polyroute.embeddings.ngrams import NGRAMS_FINGERPRINT, ngram_features, width
from polyroute.routing.registry import ROUTERS
from polyroute.routing.routers.learned import LearnedRouter, check_finite
from polyroute.routing.routers.training import (
    TrainingOptions,
    checked_input,
    ensemble_from_state,
    ensemble_state,
    fit_ensemble,
    fit_masked,
)
from polyroute.routing.tradeoff import FloatArray

#: Isotropic variance added to the prior's covariance, as a fraction of its mean variance:
#: lets a new model differ from the known ones in directions none of them spans, a little.
ISOTROPIC_SHARE = 0.05
#: Newton steps for a new model's vector (it converges in well under ten).
NEWTON_STEPS = 25
#: ``prior_strength`` of a router not built by ``polyroute train`` (and the strength its
#: simulated choice keeps unless another clearly does better).
DEFAULT_PRIOR_STRENGTH = 3.0
#: Task heads' targets are 0.5 ± this / 2 (module doc, "Task heads"): 1 would be one-hot.
DEFAULT_TASK_WEIGHT = 0.3
#: The sds :func:`offset_sd_by_evidence` chooses among (0: no offsets).
OFFSET_SD_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


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
        total = sum(_probabilities(net, _tower(net, x)) for net in self._nets)
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
        return [np.asarray(_tower(net, x), dtype=np.float64) for net in self._nets]

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


def gaussian_prior(known: FloatArray, strength: float) -> tuple[FloatArray, FloatArray]:
    """(mean, precision) of the Gaussian prior over a new [vector, bias], from the ``known``
    models' rows (k, dim + 1): their mean and covariance, plus a little isotropic variance."""
    mean = known.mean(axis=0)
    width = known.shape[1]
    one = known.shape[0] == 1  # no spread to learn from: a unit prior
    cov = np.eye(width) if one else np.cov(known, rowvar=False).reshape(width, width)
    scale = max(float(np.trace(cov)) / width, 1e-6)
    cov = cov + ISOTROPIC_SHARE * scale * np.eye(width)
    return mean, strength * np.linalg.inv(cov)


def fit_member(
    z: FloatArray,
    u: FloatArray,
    reference: list[int],
    y: FloatArray,
    *,
    peers: list[int],
    peer_scores: FloatArray,
    prior_strength: float,
    offset_sd: float | None,
) -> FloatArray:
    """One ensemble member's [vector, bias] for a new model scoring ``y`` on prompts whose
    tower output is ``z``: the prior from rows ``reference`` of the member's model matrix
    ``u``, the prompt offsets (module doc) from the ``peers`` rows and their ``peer_scores``
    (n, len(peers)) when there are any, with ``offset_sd`` (None: the most likely one)."""
    offset = None
    if peers and (offset_sd is None or offset_sd > 0):
        logits = z @ u[peers, :-1].T + u[peers, -1]
        sd = offset_sd_by_evidence(logits, peer_scores) if offset_sd is None else offset_sd
        offset = prompt_offsets(logits, peer_scores, sd) if sd > 0 else None
    return fit_vector(z, y, *gaussian_prior(u[reference], prior_strength), offset=offset)


def _blend(input_price: float, output_price: float) -> float:
    """One price per model, to compare models by: the mean of input and output prices."""
    return (float(input_price) + float(output_price)) / 2


@dataclass(frozen=True, slots=True)
class Inputs:
    """A batch of prompts as the tower reads them: dense embeddings and, with a wide term,
    their n-gram rows (a CSR matrix); indexable by rows like an array (what
    :func:`~polyroute.routing.routers.training.fit_masked` needs of its input)."""

    dense: Float32Array
    ngrams: Any = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dense.shape)

    def __getitem__(self, rows: Any) -> Inputs:
        return Inputs(self.dense[rows], None if self.ngrams is None else self.ngrams[rows])


def _deep(net: Mapping[str, NDArray[Any]], x: Inputs) -> tuple[NDArray[Any], NDArray[Any]]:
    """(hidden layer, tower output) on ``x``: the deep part, plus the wide term if any."""
    hidden = np.maximum(x.dense @ net["w1"] + net["b1"], 0.0)
    z = hidden @ net["w2"]
    if "ws" in net:
        z = z + np.asarray(x.ngrams @ net["ws"], dtype=np.float32)
    return hidden, z


def _tower(net: Mapping[str, NDArray[Any]], x: Inputs) -> NDArray[Any]:
    return np.asarray(_deep(net, x)[1])


def _probabilities(net: Mapping[str, NDArray[Any]], z: NDArray[Any]) -> NDArray[Any]:
    logits = z @ net["v"] + net["c"]
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0))))


def prompt_offsets(logits: FloatArray, outcomes: FloatArray, sd: float) -> FloatArray:
    """Per prompt, the logit ``o`` that best explains the known models' ``outcomes`` (n, k;
    NaN = unknown) as ``σ(logits + o)``: the posterior mode under N(0, sd²), by Newton steps
    (0 for a prompt with no outcome).

    A prompt on which every known model beat the router's prediction gets a positive offset:
    it is easier than the tower thinks, and a newcomer's success there says less."""
    mask = np.isfinite(outcomes)
    y = np.where(mask, outcomes, 0.0)
    o = np.zeros(logits.shape[0])
    precision = 1.0 / sd**2
    for _ in range(NEWTON_STEPS):  # concave in o: plain Newton converges
        p = 1.0 / (1.0 + np.exp(-np.clip(logits + o[:, None], -30.0, 30.0)))
        grad = ((p - y) * mask).sum(axis=1) + precision * o
        hess = (p * (1 - p) * mask).sum(axis=1) + precision
        step = grad / hess
        o = np.clip(o - step, -10.0, 10.0)
        if np.abs(step).max() < 1e-8:
            break
    return o


def offset_sd_by_evidence(logits: FloatArray, outcomes: FloatArray) -> float:
    """The sd of :func:`prompt_offsets` under which the known models' ``outcomes`` (n, k;
    NaN = unknown) are most likely, of :data:`OFFSET_SD_GRID`.

    Each prompt's offset is a random effect shared by the models; the marginal likelihood of
    its outcomes is taken by Laplace's approximation around the offset's posterior mode:
    ``log p(y | ô) − ô²/2sd² − ½ log(1 + sd² Σ p(1−p))``. With outcomes that the router's
    logits already explain, it is largest at 0 (no offsets)."""
    mask = np.isfinite(outcomes)
    y = np.where(mask, outcomes, 0.0)
    best, best_sd = -math.inf, 0.0
    for sd in OFFSET_SD_GRID:
        o = prompt_offsets(logits, outcomes, sd) if sd > 0 else np.zeros(logits.shape[0])
        t = logits + o[:, None]
        value = float(np.sum(mask * (y * t - np.logaddexp(0.0, t))))
        if sd > 0:
            p = 1.0 / (1.0 + np.exp(-np.clip(t, -30.0, 30.0)))
            curvature = (p * (1 - p) * mask).sum(axis=1)
            value -= float(o @ o) / (2 * sd**2) + 0.5 * float(np.log1p(sd**2 * curvature).sum())
        if value > best:
            best, best_sd = value, sd
    return best_sd


def fit_vector(
    z: FloatArray,
    y: FloatArray,
    mean: FloatArray,
    precision: FloatArray,
    offset: FloatArray | None = None,
) -> FloatArray:
    """MAP [vector, bias] of a logistic model ``σ(z · v + c + offset)`` for targets ``y`` in
    [0, 1] under the prior N(mean, precision⁻¹), by damped Newton steps."""
    a = np.hstack([z, np.ones((z.shape[0], 1))])
    o = np.zeros(z.shape[0]) if offset is None else np.asarray(offset, dtype=np.float64)
    u = mean.copy()

    def objective(w: FloatArray) -> float:
        t = a @ w + o
        # BCE with logits, written to stay finite: log(1 + e^t) − y·t
        loss = float(np.sum(np.logaddexp(0.0, t) - y * t))
        d = w - mean
        return loss + 0.5 * float(d @ precision @ d)

    current = objective(u)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ u + o, -30.0, 30.0)))
        grad = a.T @ (p - y) + precision @ (u - mean)
        hess = (a * (p * (1 - p))[:, None]).T @ a + precision
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:  # only with a degenerate prior; keep the last good u
            break
        t = 1.0
        while t > 1e-4:
            candidate = u - t * step
            value = objective(candidate)
            if value <= current:
                break
            t /= 2
        else:
            break
        converged = current - value < 1e-9
        u, current = candidate, value
        if converged:
            break
    return u


def train_factorised(
    x: Inputs,
    y: FloatArray,
    options: TrainingOptions,
    dim: int,
    rng: np.random.Generator,
    wide_decay: float = 0.0,
) -> dict[str, FloatArray]:
    """A tower and model vectors fitted to the known entries of ``y`` (NaN = unknown); the
    best epoch's weights on a held-out tenth of the prompts. With n-gram rows in ``x``, the
    tower has a wide term (module doc) under L2 ``wide_decay``."""
    d, m, h = x.shape[1], y.shape[1], options.hidden
    buckets, used = 0, None
    if x.ngrams is not None:
        # Only the buckets some training prompt hits can move from zero (their gradient is
        # the only one that is not 0): train those rows alone (the same fit, far less work
        # for small data), then put them back in place.
        buckets = x.ngrams.shape[1]
        used = np.unique(x.ngrams.indices)
        x = Inputs(x.dense, x.ngrams[:, used])

    def init(prior: FloatArray) -> dict[str, FloatArray]:
        net = {
            "w1": (rng.standard_normal((d, h)) * np.sqrt(2.0 / d)).astype(np.float32),
            "b1": np.zeros(h, dtype=np.float32),
            "w2": (rng.standard_normal((h, dim)) * np.sqrt(1.0 / h)).astype(np.float32),
            "v": (rng.standard_normal((dim, m)) * np.sqrt(1.0 / dim)).astype(np.float32),
            "c": np.log(prior / (1 - prior)).astype(np.float32),  # each model's average
        }
        if x.ngrams is not None:
            net["ws"] = np.zeros((x.ngrams.shape[1], dim), dtype=np.float32)
        return net

    def gradients(
        net: Mapping[str, FloatArray],
        batch: Any,
        targets: NDArray[Any],
        mask: NDArray[Any],
        decay: float,
    ) -> dict[str, FloatArray]:
        return _gradients(net, batch, targets, mask, decay, wide_decay)

    net = fit_masked(x, y, options, rng, init, gradients, _loss)  # type: ignore[arg-type]
    if used is not None:
        full: Any = np.zeros((buckets, dim), dtype=np.float32)
        full[used] = net["ws"]
        net["ws"] = full
    return net


def _loss(net: Mapping[str, FloatArray], x: Inputs, y: NDArray[Any], mask: NDArray[Any]) -> float:
    p = np.clip(_probabilities(net, _tower(net, x)), 1e-7, 1 - 1e-7)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * mask
    return float(bce.sum() / max(mask.sum(), 1.0))


def _gradients(
    net: Mapping[str, FloatArray],
    x: Inputs,
    y: NDArray[Any],
    mask: NDArray[Any],
    decay: float,
    wide_decay: float,
) -> dict[str, FloatArray]:
    hidden, z = _deep(net, x)
    p = _probabilities(net, z)
    d_logits = ((p - y) * mask / max(float(mask.sum()), 1.0)).astype(np.float32)
    d_z = d_logits @ net["v"].T
    d_hidden = (d_z @ net["w2"].T) * (hidden > 0)
    wide = {}
    if "ws" in net:
        wide["ws"] = np.asarray(x.ngrams.T @ d_z, dtype=np.float32) + wide_decay * net["ws"]
    return {
        **wide,
        "w1": x.dense.T @ d_hidden + decay * net["w1"],
        "b1": d_hidden.sum(axis=0),
        "w2": hidden.T @ d_z + decay * net["w2"],
        "v": z.T @ d_logits + decay * net["v"],
        "c": d_logits.sum(axis=0),
    }
