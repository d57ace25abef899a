"""Optimiser: warm-up schedule, Adam updates, clipping and weight decay, hand-derived."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gensynth.train import make_lr_schedule, make_optimizer


def test_schedule_rises_linearly_then_stays_at_peak():
    schedule_fn = make_lr_schedule(1e-3, warmup_steps=4)
    got = [float(schedule_fn(step)) for step in (0, 1, 2, 4, 5, 100)]
    np.testing.assert_allclose(got, [0.0, 2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3], rtol=1e-6)
    assert float(make_lr_schedule(1e-3)(0)) == pytest.approx(1e-3)


def test_adam_updates_follow_the_warmup():
    # With a constant gradient g, Adam's bias-corrected moments are g and g**2, so the
    # update at step s is exactly -lr(s) * g / (|g| + eps).
    lr, eps = 1e-3, 1e-8
    optimizer = make_optimizer(lr, warmup_steps=4, clip_norm=None, eps=eps)
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = {"w": jnp.array([0.5, -0.25, 2.0])}
    opt_state = optimizer.init(params)
    updates_by_step = []
    for _ in range(6):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        updates_by_step.append(np.asarray(updates["w"]))
    direction = -np.asarray(grads["w"]) / (np.abs(grads["w"]) + eps)
    for step, expected_lr in [(0, 0.0), (2, 5e-4), (4, lr), (5, lr)]:
        np.testing.assert_allclose(updates_by_step[step], expected_lr * direction, rtol=1e-5, atol=1e-12)


def test_clipping_rescales_gradients_to_the_global_norm():
    lr, clip_norm = 1e-2, 1.0
    params = {"a": jnp.zeros(3), "b": jnp.zeros(2)}
    grad_sequence = [
        {"a": jnp.array([3.0, 4.0, 0.0]), "b": jnp.array([0.0, 12.0])},  # global norm 13 -> clipped
        {"a": jnp.array([0.1, 0.0, 0.2]), "b": jnp.array([0.2, 0.0])},  # global norm 0.3 -> unchanged
    ]
    clipped_sequence = [
        {k: v / 13.0 for k, v in grad_sequence[0].items()},
        grad_sequence[1],
    ]

    def run(optimizer, sequence):
        opt_state = optimizer.init(params)
        for grads in sequence:
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return np.concatenate([np.asarray(updates["a"]), np.asarray(updates["b"])])

    ours = run(make_optimizer(lr, clip_norm=clip_norm), grad_sequence)
    reference = run(optax.adamw(lr, weight_decay=0.0), clipped_sequence)
    unclipped = run(optax.adamw(lr, weight_decay=0.0), grad_sequence)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    assert not np.allclose(ours, unclipped, rtol=1e-2)


def test_weight_decay_is_decoupled_and_scaled_by_lr():
    # Zero gradients: the Adam part is 0 / (0 + eps) = 0, leaving -lr * wd * param.
    lr, weight_decay = 1e-2, 0.1
    optimizer = make_optimizer(lr, weight_decay=weight_decay)
    params = {"w": jnp.array([1.0, -4.0])}
    updates, _ = optimizer.update({"w": jnp.zeros(2)}, optimizer.init(params), params)
    np.testing.assert_allclose(updates["w"], -lr * weight_decay * np.array([1.0, -4.0]), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": 1e-3, "warmup_steps": -1}, "warmup_steps"),
        ({"learning_rate": 1e-3, "clip_norm": 0.0}, "clip_norm"),
        ({"learning_rate": 1e-3, "weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_bad_arguments_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_optimizer(**kwargs)
