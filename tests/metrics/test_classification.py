"""Accuracy and ROC AUC: hand-computed values, invariances and scikit-learn as a reference."""

import jax
import numpy as np
import pytest

from gensynth.metrics.classification import accuracy, roc_auc


def _binary_scores(p1):
    p1 = np.asarray(p1, np.float32)
    return np.stack([1 - p1, p1], axis=1)


def test_accuracy_hand_value():
    scores = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    assert float(accuracy(scores, np.array([1, 0, 0, 2]))) == 0.5


def test_binary_auc_hand_values_with_ties():
    labels = np.array([0, 0, 1, 1])
    assert float(roc_auc(_binary_scores([0.1, 0.2, 0.8, 0.9]), labels)) == 1.0  # perfect ranking
    assert float(roc_auc(_binary_scores([0.8, 0.9, 0.1, 0.2]), labels)) == 0.0  # inverted
    assert float(roc_auc(_binary_scores([0.5, 0.5, 0.5, 0.5]), labels)) == 0.5  # all tied
    # Positives {0.4, 0.7} vs negatives {0.4, 0.1}: wins 0.4>0.1, 0.7>0.4, 0.7>0.1, tie 0.4=0.4 -> 3.5/4.
    assert float(roc_auc(_binary_scores([0.4, 0.1, 0.4, 0.7]), labels)) == 0.875


def test_auc_is_invariant_to_monotone_maps_and_undefined_for_one_class():
    rng = np.random.default_rng(0)
    p1, labels = rng.random(50), rng.integers(0, 2, 50)
    np.testing.assert_allclose(roc_auc(_binary_scores(p1), labels), roc_auc(_binary_scores(p1**3), labels), rtol=1e-6)
    assert np.isnan(roc_auc(_binary_scores(p1), np.ones(50, int)))


def test_matches_sklearn_binary_and_macro_ovr():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    p1 = np.round(rng.random(200) * 0.5 + 0.3 * labels, 2)  # rounded: many ties
    np.testing.assert_allclose(roc_auc(_binary_scores(p1), labels), metrics.roc_auc_score(labels, p1), rtol=1e-5)
    labels = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[labels]
    probs = np.asarray(jax.nn.softmax(logits, axis=1), np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    expected = metrics.roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    np.testing.assert_allclose(jax.jit(roc_auc)(probs, labels), expected, rtol=1e-5)


def test_checks_shapes():
    with pytest.raises(ValueError, match="scores, labels"):
        accuracy(np.zeros((4, 2)), np.zeros(3, int))
    with pytest.raises(ValueError, match="scores, labels"):
        roc_auc(np.zeros((4, 1)), np.zeros(4, int))
