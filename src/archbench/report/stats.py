"""Uncertainty and significance for the comparison: bootstrap intervals, paired tests, Holm.

``correct`` arrays are ``(seeds, examples)`` booleans: whether each seed's run got each test example
right, the same test examples in the same order for every model of a dataset (that pairing is what
makes the tests paired). scipy's exact binomial test is McNemar's exact test on the discordant pairs;
the bootstraps are a few lines of numpy, vectorised (scipy.stats.bootstrap has no paired-by-example,
pooled-over-seeds form).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 10_000
ALPHA = 0.05


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided p-value of McNemar's exact test for two classifiers on the same examples."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given), monotone and capped at 1."""
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


@dataclass
class Difference:
    """A metric of A minus the same of B (accuracy, RMSE), pooled over seeds, with its paired bootstrap."""

    mean: float
    low: float
    high: float
    p_value: float


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = N_BOOT,
                     seed: int = 0) -> Difference:
    """Resample test examples (the same draw for every seed of both models, keeping the pairing);
    the accuracy difference averaged over seeds. Two-sided p: twice the smaller tail beyond 0."""
    a, b = np.atleast_2d(correct_a).astype(float), np.atleast_2d(correct_b).astype(float)
    per_example = a.mean(axis=0) - b.mean(axis=0)  # seed-averaged difference per example
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, per_example.size, size=(n_boot, per_example.size))
    return _difference(float(per_example.mean()), per_example[draws].mean(axis=1))


def _difference(mean: float, boot: np.ndarray) -> Difference:
    """The observed difference with its bootstrap draws' 95 % interval and two-sided p (twice the
    smaller tail beyond 0)."""
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    tail = min(np.mean(boot <= 0), np.mean(boot >= 0))
    return Difference(mean, float(low), float(high), float(min(1.0, 2 * tail)))


def paired_rmse_bootstrap(squared_a: np.ndarray, squared_b: np.ndarray, n_boot: int = N_BOOT,
                          seed: int = 0) -> Difference:
    """RMSE of A minus RMSE of B on the same test examples, their squared errors ``(seeds, examples)``
    averaged over seeds (the pooled RMSE the report shows); the examples resampled as one draw for
    both, keeping the pairing. Two-sided p: twice the smaller tail beyond 0."""
    a = np.atleast_2d(squared_a).astype(float).mean(axis=0)
    b = np.atleast_2d(squared_b).astype(float).mean(axis=0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, a.size, size=(n_boot, a.size))
    return _difference(float(np.sqrt(a.mean()) - np.sqrt(b.mean())),
                       np.sqrt(a[draws].mean(axis=1)) - np.sqrt(b[draws].mean(axis=1)))


def mean_ci(correct: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """95 % interval of accuracy over both sources of noise: seeds and test examples are each
    resampled with replacement (a two-level bootstrap)."""
    values = np.atleast_2d(correct).astype(float)
    sums, _ = _two_level_sums(values, n_boot, seed)
    low, high = np.quantile(sums / values.size, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


def ratio_ci(numerators: np.ndarray, denominators: np.ndarray, n_boot: int = N_BOOT,
             seed: int = 0) -> tuple[float, float]:
    """95 % interval of a pooled ratio such as a word error rate (edit errors summed over test
    examples, divided by their reference words summed): ``numerators`` ``(seeds, examples)``,
    ``denominators`` ``(examples,)``, both levels resampled as in ``mean_ci``."""
    values = np.atleast_2d(numerators).astype(float)
    sums, examples = _two_level_sums(values, n_boot, seed)
    words = np.asarray(denominators, float)[examples].sum(axis=1) * values.shape[0]
    low, high = np.quantile(sums / words, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


def _two_level_sums(values: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per bootstrap draw, the sum of ``values`` ``(seeds, examples)`` over resampled seeds and
    resampled examples; and each draw's examples ``(n_boot, examples)``."""
    n_seeds, n_examples = values.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    examples = rng.integers(0, n_examples, size=(n_boot, n_examples))
    # a draw's sum over its resampled seeds and examples, without a (draw, seed, example) array:
    # weight each seed by how often the draw picked it, then gather the draw's examples
    picks = np.zeros((n_boot, n_seeds))
    np.add.at(picks, (np.arange(n_boot)[:, None], seeds), 1.0)
    sums = np.empty(n_boot)
    chunk = 1000  # draws at a time: their weighted sums take ~8 MB per 1,000 test examples
    for start in range(0, n_boot, chunk):
        rows = slice(start, start + chunk)
        weighted = picks[rows] @ values
        sums[rows] = np.take_along_axis(weighted, examples[rows], axis=1).sum(axis=1)
    return sums, examples


def seed_ci(values: list[float], n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of per-seed values (for metrics without per-example
    predictions, e.g. R² or FID); a single seed gives a zero-width interval."""
    data = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    boot = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins (torchmetrics' implementation)."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    return float(multiclass_calibration_error(torch.as_tensor(probs, dtype=torch.float32),
                                              torch.as_tensor(targets, dtype=torch.long),
                                              num_classes=probs.shape[1], n_bins=bins, norm="l1"))


def negative_log_likelihood(probs: np.ndarray, targets: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, 1.0))))


def brier_score(probs: np.ndarray, targets: np.ndarray) -> float:
    """Multi-class Brier score: mean over examples of the squared distance to the one-hot truth."""
    onehot = np.eye(probs.shape[1])[targets]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (for reliability diagrams)."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    hits = np.bincount(which, weights=(predicted == targets).astype(float), minlength=bins)
    conf = np.bincount(which, weights=confidence, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return conf / counts, hits / counts, counts
