"""Kernel SHAP (Lundberg & Lee, 2017): additive feature attributions of any model's outputs, from
the model's answers alone.

A coalition of features is scored by running the model on rows that keep the instance's values of
the features in the coalition and take the other features from each background row: the mean
output over the background is the coalition's value. The attributions are the weighted least-squares
fit of those values, weighted by the Shapley kernel, with the efficiency constraint (the attributions
add up to f(instance) - E[f(background)]) enforced exactly by eliminating the last feature. With
every coalition evaluated (2^M - 2 of them, M features) the fit gives the Shapley values themselves;
with fewer, coalitions are drawn with the Shapley kernel's size distribution, each with its
complement (paired sampling: Covert & Lee, 2021), and weighted equally.

Numpy only: `f` maps a float matrix (rows by the version's features) to its outputs (rows by
outputs: a classifier's class probabilities, a regressor's one value). How a version runs is the
caller's (aimass.serving.explanations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import comb

import numpy as np

# The default coalition count is 2 * M + EXTRA_SAMPLES, shap's `nsamples="auto"`.
EXTRA_SAMPLES = 2048
# The most model rows built and run at once: bounds the memory of a request (rows x features floats).
CHUNK_ROWS = 16_384
# What `base_value + sum(attributions)` may differ from the explained output by (float64 sums of
# float32 outputs): stated in docs/explain.md and checked by the tests.
TOLERANCE = 1e-6

Model = Callable[[np.ndarray], np.ndarray]


def default_samples(features: int) -> int:
    """The coalitions evaluated per instance unless a request says otherwise."""
    return 2 * features + EXTRA_SAMPLES


@dataclass(frozen=True)
class Coalitions:
    """The coalitions an instance is scored on (rows by features, True: the instance's value), their
    regression weights, and whether they are all of them (the attributions are then exact)."""

    masks: np.ndarray
    weights: np.ndarray
    exact: bool

    @property
    def count(self) -> int:
        return len(self.masks)


def coalitions(features: int, samples: int, seed: int = 0) -> Coalitions:
    """Every coalition but the empty and the full one when there are at most `samples` of them, with
    the Shapley kernel's weights; else `samples` (rounded up to an even count) drawn in complementary
    pairs, sizes by the kernel's distribution, weighted equally."""
    if features < 2:
        return Coalitions(np.zeros((0, features), dtype=bool), np.zeros(0), exact=True)
    if features < 31 and 2**features - 2 <= samples:
        codes = np.arange(1, 2**features - 1, dtype=np.int64)
        masks = ((codes[:, None] >> np.arange(features)) & 1).astype(bool)
        sizes = masks.sum(axis=1)
        kernel = np.array([0.0] + [_kernel(features, s) for s in range(1, features)])
        return Coalitions(masks, kernel[sizes], exact=True)
    rng = np.random.default_rng(seed)
    pairs = (samples + 1) // 2
    sizes = np.arange(1, features)
    mass = np.array([(features - 1) / (s * (features - s)) for s in sizes])
    drawn = rng.choice(sizes, size=pairs, p=mass / mass.sum())
    # A random size-s subset of each row: the s features with the smallest random keys.
    keys = rng.random((pairs, features))
    ranks = keys.argsort(axis=1).argsort(axis=1)
    half = ranks < drawn[:, None]
    masks = np.empty((2 * pairs, features), dtype=bool)
    masks[0::2], masks[1::2] = half, ~half
    return Coalitions(masks, np.ones(2 * pairs), exact=False)


def _kernel(features: int, size: int) -> float:
    """The Shapley kernel's weight of a coalition of `size` of `features` features."""
    return (features - 1) / (comb(features, size) * size * (features - size))


@dataclass(frozen=True)
class Explanation:
    """Kernel SHAP of some instances, for every output of the model: `attributions` is instances by
    features by outputs, `base` E[f(background)] per output, `outputs` f(instance) per instance and
    output; base + attributions.sum(axis=1) == outputs to within TOLERANCE."""

    attributions: np.ndarray
    base: np.ndarray
    outputs: np.ndarray
    samples: int
    exact: bool
    evaluated_rows: int


def evaluated_rows(instances: int, features: int, samples: int, background: int) -> int:
    """The model rows an explanation runs: each instance's coalitions over every background row, plus
    the instances and the background themselves. What a request's budget bounds."""
    drawn = coalitions_count(features, samples)
    return instances * drawn * background + instances + background


def coalitions_count(features: int, samples: int) -> int:
    """How many coalitions `coalitions(features, samples)` gives, without drawing them."""
    if features < 2:
        return 0
    if features < 31 and 2**features - 2 <= samples:
        return 2**features - 2
    return 2 * ((samples + 1) // 2)


def kernel_shap(
    f: Model,
    background: np.ndarray,
    instances: np.ndarray,
    samples: int | None = None,
    seed: int = 0,
    chunk_rows: int = CHUNK_ROWS,
) -> Explanation:
    """The attributions of every instance (rows by features) against the background (rows by
    features), for each of f's outputs. The model is run in chunks of at most `chunk_rows` rows (at
    least one coalition's background rows), one call per chunk. The rows are built in the inputs'
    float type (float32 for a float32 model: no conversion per chunk); the fit is in float64."""
    background, instances = _floats(background), _floats(instances)
    count, features = instances.shape
    if background.ndim != 2 or background.shape[1] != features or len(background) == 0:
        raise ValueError(f"the background must be a non-empty matrix of {features} features")
    samples = default_samples(features) if samples is None else samples
    chosen = coalitions(features, samples, seed)
    base = _outputs(f, background).mean(axis=0)
    outputs = _outputs(f, instances)
    delta = outputs - base
    width = outputs.shape[1]
    if chosen.count == 0:  # one feature: it is given the whole difference
        attributions = delta[:, None, :].copy()
    else:
        values = _coalition_values(f, background, instances, chosen.masks, width, chunk_rows)
        attributions = _fit(chosen, values, base, delta)
    rows = count * chosen.count * len(background) + count + len(background)
    return Explanation(attributions, base, outputs, chosen.count, chosen.exact, rows)


def _floats(matrix: np.ndarray) -> np.ndarray:
    array = np.asarray(matrix)
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def _outputs(f: Model, rows: np.ndarray) -> np.ndarray:
    answer = np.asarray(f(rows), dtype=np.float64)
    return answer.reshape(len(rows), -1)


def _coalition_values(
    f: Model,
    background: np.ndarray,
    instances: np.ndarray,
    masks: np.ndarray,
    width: int,
    chunk_rows: int,
) -> np.ndarray:
    """Each (instance, coalition)'s mean output over the background: instances by coalitions by
    outputs. Pairs are taken in order across instances, so a chunk may hold several instances'."""
    size = len(background)
    count, coalition_count = len(instances), len(masks)
    values = np.empty((count * coalition_count, width))
    per_chunk = max(1, chunk_rows // size)
    total = count * coalition_count
    for start in range(0, total, per_chunk):
        pairs = np.arange(start, min(total, start + per_chunk))
        which, coalition = np.divmod(pairs, coalition_count)
        rows = np.where(masks[coalition][:, None, :], instances[which][:, None, :], background[None])
        answer = _outputs(f, rows.reshape(-1, rows.shape[-1]))
        values[pairs] = answer.reshape(len(pairs), size, width).mean(axis=1)
    return values.reshape(count, coalition_count, width)


def _fit(chosen: Coalitions, values: np.ndarray, base: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The constrained weighted least squares of every instance and output at once. The last
    feature's attribution is the difference left by the others, so the sum is exact; the design
    matrix is the same for every instance, so it is solved for once: by the normal equations (an
    (M - 1)-square system: an SVD of the whole design took 100 times longer on a busy machine), by the
    pseudo-inverse when the drawn coalitions leave them singular."""
    z = chosen.masks.astype(np.float64)
    last = z[:, -1:]
    design = z[:, :-1] - last
    weighted = design.T * chosen.weights  # (M - 1) by coalitions
    gram = weighted @ design
    if np.linalg.matrix_rank(gram) == len(gram):
        solve = np.linalg.solve(gram, weighted)
    else:  # fewer distinct coalitions than features: the least-norm fit
        root = np.sqrt(chosen.weights)[:, None]
        solve = np.linalg.pinv(root * design) * root.T
    # y: each coalition's value less the base and less the last feature's share when it is in it
    y = values - base[None, None, :] - last[None, :, :] * delta[:, None, :]
    rest = np.einsum("mc,ick->imk", solve, y)
    final = delta - rest.sum(axis=1)
    return np.concatenate([rest, final[:, None, :]], axis=1)


def global_importance(
    f: Model,
    background: np.ndarray,
    samples: int | None = None,
    seed: int = 0,
    rows: int | None = None,
) -> np.ndarray:
    """Mean |SHAP| per feature over the background's own rows (the first `rows` of them; all when
    None), each row explained against the whole background, for the output each row gives most
    (a classifier's predicted class; a regressor's one value). One number per feature, in the
    background's column order: the global summary a model card shows."""
    background = _floats(background)
    explained = background if rows is None else background[:rows]
    result = kernel_shap(f, background, explained, samples, seed)
    chosen = result.outputs.argmax(axis=1)
    picked = result.attributions[np.arange(len(explained)), :, chosen]
    importance: np.ndarray = np.abs(picked).mean(axis=0)
    return importance
