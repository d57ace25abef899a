"""Classification metrics from class scores: accuracy and ROC AUC (binary, or macro one-vs-rest).

References:
  Hanley & McNeil 1982, "The meaning and use of the area under a receiver operating characteristic
  (ROC) curve" (AUC as the Mann-Whitney statistic); Hand & Till 2001 (multi-class AUC).
"""

import jax
import jax.numpy as jnp


def _check(scores: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    scores, labels = jnp.asarray(scores), jnp.asarray(labels)
    if scores.ndim != 2 or scores.shape[1] < 2 or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"scores, labels: expected scores [N, K] with K >= 2 and labels [N], got {scores.shape} and {labels.shape}"
        )
    return scores.astype(jnp.float32), labels.astype(jnp.int32)


def accuracy(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of samples whose highest-scoring class is the label.

    Args:
      scores: ``[N, K]`` class scores (logits or probabilities).
      labels: ``[N]`` integer labels in ``[0, K)``.

    Returns:
      ``[]`` float32 accuracy in [0, 1].

    Raises:
      ValueError: on inconsistent shapes.

    >>> float(accuracy(jnp.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), jnp.array([0, 1, 1])))
    0.6666666865348816
    """
    scores, labels = _check(scores, labels)
    return jnp.mean(jnp.argmax(scores, axis=1) == labels, dtype=jnp.float32)


def _binary_auc(score: jax.Array, positive: jax.Array) -> jax.Array:
    """Mann-Whitney AUC of `score` [N] for the boolean `positive` [N], ties counted 1/2; nan if one-class."""
    ordered = jnp.sort(score)
    below = jnp.searchsorted(ordered, score, side="left")
    not_above = jnp.searchsorted(ordered, score, side="right")
    rank = (below + not_above + 1) / 2.0  # 1-based mid-rank, ties averaged
    n_pos = jnp.sum(positive, dtype=jnp.float32)
    n_neg = score.shape[0] - n_pos
    u = jnp.sum(jnp.where(positive, rank, 0.0)) - n_pos * (n_pos + 1) / 2.0
    return jnp.where((n_pos > 0) & (n_neg > 0), u / jnp.maximum(n_pos * n_neg, 1.0), jnp.nan)


def roc_auc(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Area under the ROC curve: binary for K = 2, macro one-vs-rest for K > 2.

    The AUC of a score is the probability that a random positive outscores a random negative (ties
    count one half). With K = 2 it is taken on ``scores[:, 1]``; with K > 2 class k is scored by
    ``scores[:, k]`` against all other classes and the AUCs are averaged over the classes present
    (a class with no positive or no negative sample is undefined and left out).

    Args:
      scores: ``[N, K]`` class probabilities (softmax outputs; raw logits of a K = 2 model rank
        differently than its probabilities, so pass probabilities).
      labels: ``[N]`` integer labels in ``[0, K)``.

    Returns:
      ``[]`` float32 AUC in [0, 1] (0.5 = chance); nan if no class is defined.

    Raises:
      ValueError: on inconsistent shapes.

    >>> float(roc_auc(jnp.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]]), jnp.array([0, 1, 0, 1])))
    0.75
    """
    scores, labels = _check(scores, labels)
    num_classes = scores.shape[1]
    if num_classes == 2:
        return _binary_auc(scores[:, 1], labels == 1)
    per_class = jax.vmap(_binary_auc, in_axes=(1, 0))(scores, labels[None, :] == jnp.arange(num_classes)[:, None])
    return jnp.nanmean(per_class)
