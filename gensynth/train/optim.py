"""The optimiser: global-norm clipping, then AdamW under a linear warm-up schedule."""

from __future__ import annotations

import optax


def make_lr_schedule(learning_rate: float, *, warmup_steps: int = 0) -> optax.Schedule:
    """Learning rate rising linearly from 0 to ``learning_rate``, then constant.

    .. math::

        \\eta(s) = \\eta_{\\max} \\min(s / S_w, 1)

    with ``s`` the optimiser step (0-based), ``eta_max = learning_rate`` and
    ``S_w = warmup_steps``; with ``warmup_steps=0`` the rate is constant.

    Args:
        learning_rate: peak learning rate, > 0.
        warmup_steps: steps of linear warm-up, >= 0.

    Returns:
        A schedule ``schedule_fn(step) -> learning rate``.

    Raises:
        ValueError: for a non-positive ``learning_rate`` or negative ``warmup_steps``.

    Example:
        >>> schedule_fn = make_lr_schedule(1e-3, warmup_steps=4)
        >>> [round(float(schedule_fn(s)), 6) for s in (0, 2, 4, 10)]
        [0.0, 0.0005, 0.001, 0.001]
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected a positive float, got {learning_rate}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps: expected an int >= 0, got {warmup_steps}")
    constant_fn = optax.constant_schedule(learning_rate)
    if warmup_steps == 0:
        return constant_fn
    warmup_fn = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup_fn, constant_fn], boundaries=[warmup_steps])


def make_optimizer(
    learning_rate: float,
    *,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    clip_norm: float | None = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """AdamW with linear warm-up, after clipping gradients to a global norm.

    Args:
        learning_rate: peak learning rate, > 0.
        warmup_steps: steps of linear warm-up from 0 (``make_lr_schedule``).
        weight_decay: decoupled weight decay (AdamW's lambda), >= 0, applied to all
            parameters and scaled by the learning rate.
        clip_norm: gradients are rescaled so their global L2 norm is at most this;
            None disables clipping.
        b1: Adam's first-moment decay.
        b2: Adam's second-moment decay.
        eps: Adam's denominator epsilon.

    Returns:
        An ``optax.GradientTransformation``
        (``chain(clip_by_global_norm, adamw(schedule))``).

    Raises:
        ValueError: for a non-positive ``clip_norm``, a negative ``weight_decay``,
            or a bad learning rate / warm-up (see ``make_lr_schedule``).

    References:
        Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Example:
        >>> optimizer = make_optimizer(1e-3, warmup_steps=100)
        >>> isinstance(optimizer, optax.GradientTransformation)
        True
    """
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm: expected a positive float or None, got {clip_norm}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay: expected a float >= 0, got {weight_decay}")
    schedule_fn = make_lr_schedule(learning_rate, warmup_steps=warmup_steps)
    adamw = optax.adamw(schedule_fn, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    if clip_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(clip_norm), adamw)
