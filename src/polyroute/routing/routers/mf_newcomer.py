"""A new model's vector in an ``mf`` router: the MAP fit that :meth:`MFRouter.add_model` runs.

Kept apart from the router because it is the part onboarding is about, and reads only
arrays: the frozen tower's outputs ``z`` on the anchors, the known models' [vector, bias]
rows ``u``, the newcomer's scores ``y``. The prior is a Gaussian fitted to the known models'
rows (:func:`gaussian_prior`); each anchor may carry an offset, the logit by which the known
models did better or worse there than predicted (:func:`prompt_offsets`), with the sd that
makes their scores most likely (:func:`offset_sd_by_evidence`); the vector is the posterior
mode (:func:`fit_vector`). Why each piece: the module doc of
:mod:`polyroute.routing.routers.mf`.
"""

from __future__ import annotations

import math

import numpy as np

from polyroute.routing.tradeoff import FloatArray

#: Isotropic variance added to the prior's covariance, as a fraction of its mean variance:
#: lets a new model differ from the known ones in directions none of them spans, a little.
ISOTROPIC_SHARE = 0.05
#: Newton steps for a new model's vector (it converges in well under ten).
NEWTON_STEPS = 25
#: The sds :func:`offset_sd_by_evidence` chooses among (0: no offsets).
OFFSET_SD_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


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
