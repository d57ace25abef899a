"""The supervised baseline of the pattern-agnostic check (spec Sect. 10.3 E2, Fig. 7.1 claim): a
U-Net trained for ONE sampling mask to map the zero-filled image to the reference, then applied
to other masks.

It is the library's U-Net with its time input fixed at 0 and a residual output,
``x = x_zf + unet(x_zf)``, trained with MSE on the prior's training slices (never the held-out
ones), each batch augmented on device and simulated through the training operator with the
experiment's noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ch07.tasks import NOISE
from gensynth import data, models, train


def _unet(key: jax.Array) -> models.UNet:
    return models.UNet(
        1, 1, spatial_dims=2, channels=16, channel_mult=(1, 2, 4), num_res_blocks=1, attention_levels=(),
        groups=8, rngs=nnx.Rngs(params=key),
    )


def _zero_filled(key: jax.Array, op: Any, x: jax.Array) -> jax.Array:
    """``Re(A^H (A x + n))`` for ``x [B, H, W]`` (noise on the measured entries)."""
    y = jax.vmap(op.A)(x)
    inner = op.op if hasattr(op, "op") else op
    y = y + NOISE * getattr(inner, "mask", 1.0) * jax.random.normal(key, y.shape, y.dtype)
    return jax.vmap(op.A_adjoint)(y).real.astype(jnp.float32)


def _apply(model: models.UNet, x_zf: jax.Array) -> jax.Array:
    """``[B, H, W]`` zero-filled -> ``[B, H, W]`` estimate."""
    h = x_zf[..., None]
    return (h + model(h, jnp.zeros(h.shape[0], jnp.int32)))[..., 0]


def train_supervised(
    images: np.ndarray, op: Any, *, steps: int, batch_size: int = 16, seed: int = 0, learning_rate: float = 1e-3
) -> Callable[[jax.Array], jax.Array]:
    """Trains on ``images [N, H, W]`` for the operator ``op``; returns ``apply(x_zf [B, H, W])``
    with the EMA weights, jitted."""
    optimizer = train.make_optimizer(learning_rate, warmup_steps=min(100, steps // 10))
    graphdef, state = train.create_train_state(
        jax.random.key(seed), lambda: _unet(jax.random.key(seed, impl="rbg")), optimizer
    )
    augment = data.make_augment_fn()

    def loss_fn(model, key, batch):
        augment_key, noise_key = jax.random.split(key)
        ref = augment(augment_key, batch["image"][..., None])[..., 0]
        err = _apply(model, _zero_filled(noise_key, op, ref)) - ref
        loss = jnp.mean(err**2)
        return loss, {"mse": loss}

    step_fn = train.make_train_step(graphdef, loss_fn, optimizer, ema_decay=0.99)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = {"image": jnp.asarray(images[rng.integers(0, len(images), batch_size)])}
        state, _ = step_fn(state, batch)
    model = nnx.merge(graphdef, state.ema_params)
    return jax.jit(lambda x_zf: _apply(model, x_zf))
