"""The downstream-utility harness on tasks whose answer is known: easy, useless data, separable."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.metrics.downstream import (
    SmallClassifier,
    SmallSegmenter,
    format_utility_table,
    run_utility_study,
)

_SMALL = {"batch_size": 8, "channels": 8, "levels": 2, "learning_rate": 3e-3, "progress": False}


def _discs(key, n, size=16):
    """Bright discs (radius 2-4 px, intensity 1) on Gaussian noise (sd 0.5), with their masks."""
    k_centre, k_radius, k_noise = jax.random.split(key, 3)
    centre = jax.random.uniform(k_centre, (n, 2), minval=4, maxval=size - 4)
    radius = jax.random.uniform(k_radius, (n,), minval=2.0, maxval=4.0)
    yy, xx = jnp.mgrid[:size, :size]
    mask = (yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2 <= radius[:, None, None] ** 2
    x = mask + 0.5 * jax.random.normal(k_noise, mask.shape)
    return np.asarray(x[..., None], np.float32), np.asarray(mask, np.int32)


def _halves(key, n, size=16):
    """Class 1: the left half is 1 brighter, class 0: the right half; noise sd 1 (linearly separable)."""
    k_label, k_noise = jax.random.split(key)
    y = jax.random.bernoulli(k_label, 0.5, (n,)).astype(jnp.int32)
    left = (jnp.arange(size) < size // 2)[None, None, :]
    signal = jnp.where(y[:, None, None] == 1, left, ~left)  # [n, 1, size]
    x = signal + jax.random.normal(k_noise, (n, size, size))
    return np.asarray(x[..., None], np.float32), np.asarray(y)


def test_real_segmenter_learns_and_label_shuffled_synthetic_does_not():
    real, test = _discs(jax.random.key(1), 64), _discs(jax.random.key(2), 32)
    shuffled = (real[0], real[1][np.random.default_rng(0).permutation(64)])  # masks of other images
    results = run_utility_study(
        jax.random.key(0), real=real, synthetic=shuffled, test=test, settings=("real", "synthetic", "mixed"),
        mix_ratio=0.5, steps=150, seeds=1, **_SMALL,
    )  # fmt: skip
    dice = {name: entry["dice"]["mean"] for name, entry in results["settings"].items()}
    assert dice["real"] > 0.8, dice
    assert dice["synthetic"] < dice["real"] - 0.3, dice
    assert [results["settings"][name]["n_train"] for name in ("real", "synthetic", "mixed")] == [64, 64, 96]
    table = format_utility_table(results)
    assert table.splitlines()[0] == "| setting | n_train | dice |" and len(table.splitlines()) == 5


def test_classifier_separates_a_linear_task_over_two_seeds():
    real, test = _halves(jax.random.key(3), 64), _halves(jax.random.key(4), 64)
    results = run_utility_study(
        jax.random.key(5), real=real, test=test, task="classification", settings=("real",), steps=100, seeds=2,
        **_SMALL,
    )  # fmt: skip
    entry = results["settings"]["real"]
    assert results["metrics"] == ["accuracy", "auc"]
    assert entry["accuracy"]["mean"] > 0.9 and entry["auc"]["mean"] > 0.95, entry
    per_seed = entry["accuracy"]["per_seed"]
    assert len(per_seed) == 2 and entry["accuracy"]["sd"] == pytest.approx(np.std(per_seed, ddof=1))


def test_networks_map_3d_volumes_to_voxel_and_image_logits():
    def shapes():
        x = jnp.zeros((1, 8, 8, 4, 2))
        seg = SmallSegmenter(2, 3, spatial_dims=3, channels=4, levels=3, rngs=nnx.Rngs(0))
        cls = SmallClassifier(2, 5, spatial_dims=3, channels=4, levels=3, rngs=nnx.Rngs(0))
        return seg(x), cls(x)

    seg_logits, cls_logits = jax.eval_shape(shapes)
    assert seg_logits.shape == (1, 8, 8, 4, 3) and cls_logits.shape == (1, 5)


def test_format_utility_table_rows_and_values():
    entry = {"n_train": 10, "dice": {"mean": 0.81234, "sd": 0.0456, "per_seed": [0.78, 0.84]}}
    table = format_utility_table({"metrics": ["dice"], "settings": {"real": entry, "mixed": {**entry, "n_train": 20}}})
    assert table.splitlines()[2:] == ["| real | 10 | 0.812 ± 0.046 |", "| mixed | 20 | 0.812 ± 0.046 |"]
    with pytest.raises(ValueError, match="results"):
        format_utility_table({"settings": {}})


def test_checks_inputs():
    x, y = np.zeros((4, 8, 8, 1), np.float32), np.zeros((4, 8, 8), np.int32)
    def run(**kw):
        return run_utility_study(jax.random.key(0), **{"real": (x, y), "test": (x, y), "settings": ("real",), **kw})

    with pytest.raises(ValueError, match="synthetic"):
        run(settings=("real", "mixed"))
    with pytest.raises(ValueError, match="settings"):
        run(settings=("real", "rael"))
    with pytest.raises(ValueError, match="key"):
        run_utility_study(0, real=(x, y), test=(x, y), settings=("real",))
    with pytest.raises(ValueError, match="task"):
        run(task="detection")
    with pytest.raises(ValueError, match="real"):
        run(real=(x, y[:, :4]))
    with pytest.raises(ValueError, match="test"):
        run(test=(x, y + 2))  # labels outside [0, num_classes)
    with pytest.raises(ValueError, match="mix_ratio"):
        run(synthetic=(x, y), settings=("mixed",), mix_ratio=2.0)  # asks for 8 synthetic, has 4
    with pytest.raises(ValueError, match="levels"):
        run(levels=5)
