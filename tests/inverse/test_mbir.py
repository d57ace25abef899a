"""DiffusionMBIR: 3D volumes from a 2D prior with TV along z by ADMM; consistency, the TV-z
coupling of slices, NFE accounting and sharding."""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import VESDE, gaussian_score_fn
from gensynth.inverse.dc import Dz
from gensynth.inverse.mbir import diffusion_mbir
from tests.inverse.posterior_kit import (
    MU,
    MU_NET,
    SIGMA2_NET,
    assert_same_on_mesh,
    counted,
    orthonormal_op,
)

SDE = VESDE(sigma_min=0.01, sigma_max=20.0)
SCORE = gaussian_score_fn(MU_NET, SIGMA2_NET, SDE)
D = 4


def _data(B):
    op = orthonormal_op()
    volume = np.broadcast_to(MU + 0.5, (D, 4, 4))  # constant along z
    y = jnp.broadcast_to(jax.vmap(op.A)(jnp.asarray(volume, jnp.float32)), (B, D, 6))
    return op, volume, y


def test_mbir_consistent_tv_z_counts_and_mesh():
    # The truth is constant along z. The null-space content of each slice comes from the 2D
    # prior and from the persistent ADMM split variable; a strong TV-z weight shrinks the
    # z-differences (mean |D_z x| measured 7.3 with lam = 0, 1.1 with lam = 2 at 60 steps), and
    # the final projection keeps A x = y per slice.
    op, volume, y = _data(16)
    counter = {}
    score = counted(SCORE, counter)
    tv = {}
    for lam in (0.0, 2.0):
        x, info = diffusion_mbir(jax.random.key(0), score, op, y, sde=SDE, num_steps=60, lam=lam)
        assert x.shape == (16, D, 4, 4)
        assert np.abs(np.asarray(jax.vmap(jax.vmap(op.A))(x) - y)).max() < 1e-4
        tv[lam] = float(jnp.mean(jnp.abs(jax.vmap(Dz)(x))))
    assert tv[2.0] < 0.5 * tv[0.0], tv
    assert counter == {"fwd": 240} and info["nfe"] == 120 and not info["needs_vjp"]
    assert_same_on_mesh(
        lambda ys: diffusion_mbir(jax.random.key(0), score, op, ys, sde=SDE, num_steps=60, lam=2.0)[
            0
        ],
        y,
        reference=x,
    )
