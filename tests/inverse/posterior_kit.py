"""Shared pieces of the solver tests: a Gaussian prior with a linear operator, whose posterior
is closed-form (operators: :class:`gensynth.inverse.dense.DenseOperator`), and an NFE counter.

Prior ``x ~ N(MU, diag(SIGMA2))`` on 4x4 images, ``y = M x + sigma_y n``:

  posterior mean = MU + S M^T (M S M^T + sigma_y^2 I)^{-1} (y - M MU),  S = diag(SIGMA2)
"""

import jax
import jax.numpy as jnp
import numpy as np

from gensynth.diffusion import gaussian_eps_fn, linear_betas, vp_schedule
from gensynth.inverse.dense import DenseOperator

SHAPE = (4, 4)
N = 16
M_ROWS = 6
_rng = np.random.default_rng(7)
MU = _rng.uniform(-0.5, 0.5, SHAPE).astype(np.float32)
SIGMA2 = _rng.uniform(0.2, 1.0, SHAPE).astype(np.float32)


def orthonormal_op(m=M_ROWS, seed=0):
    """``m`` orthonormal rows (``A A^H = I``: the projection is exact)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(N, N)))
    return DenseOperator.create(jnp.asarray(q[:m], jnp.float32), SHAPE)


def random_op(m=M_ROWS, seed=0):
    """A random Gaussian matrix scaled to unit spectral norm (Landweber-stable)."""
    a = np.random.default_rng(seed).normal(size=(m, N))
    return DenseOperator.create(jnp.asarray(a / np.linalg.norm(a, 2), jnp.float32), SHAPE)


def posterior(op, y, sigma_y):
    """Exact posterior ``(mean [4, 4], cov [16, 16])`` in float64."""
    a = np.asarray(op.matrix, np.float64)
    s = np.diag(SIGMA2.ravel().astype(np.float64))
    gain = s @ a.T @ np.linalg.inv(a @ s @ a.T + sigma_y**2 * np.eye(a.shape[0]))
    mean = MU.ravel() + gain @ (np.asarray(y, np.float64) - a @ MU.ravel())
    return mean.reshape(SHAPE), s - gain @ a @ s


def measurement(op, sigma_y, seed=1):
    """A draw ``x ~ prior`` and ``y = A x + sigma_y n`` (both float32)."""
    rng = np.random.default_rng(seed)
    x = MU + np.sqrt(SIGMA2) * rng.normal(size=SHAPE)
    y = np.asarray(op.A(jnp.asarray(x, jnp.float32))) + sigma_y * rng.normal(
        size=op.matrix.shape[0]
    )
    return x.astype(np.float32), y.astype(np.float32)


def counted(fn, counter):
    """Wraps ``fn(x, t)`` so that ``counter["fwd"]`` counts its executed calls and
    ``counter["vjp"]`` the backward passes through it (``jax.debug.callback``)."""

    def bump(name):
        counter[name] = counter.get(name, 0) + 1

    @jax.custom_vjp
    def tap(out):
        return out

    def tap_fwd(out):
        return out, None

    def tap_bwd(_, g):
        jax.debug.callback(lambda: bump("vjp"))
        return (g,)

    tap.defvjp(tap_fwd, tap_bwd)

    def wrapped(x, t):
        jax.debug.callback(lambda: bump("fwd"))
        return tap(fn(x, t))

    return wrapped


MU_NET, SIGMA2_NET = MU[..., None], SIGMA2[..., None]  # the default CHANNEL layout [B, 4, 4, 1]
SCHED = vp_schedule(linear_betas(1000))
EPS = gaussian_eps_fn(MU_NET, SIGMA2_NET, SCHED)  # the exact eps denoiser of the Gaussian prior


def assert_same_on_mesh(solve, y, atol=1e-5, reference=None):
    """``solve(y)`` with ``y [B, ...]`` sharded on 'data' of a 4-device mesh equals the
    single-device result for the same key (``reference``, or computed here), and the batch
    really was split over 4 devices."""
    from gensynth.train import make_mesh

    mesh = make_mesh(4)
    sharded = jax.device_put(y, jax.NamedSharding(mesh, jax.P("data")))
    assert len(sharded.sharding.device_set) == 4
    x_one = np.asarray(
        solve(jax.device_put(y, jax.devices()[0])) if reference is None else reference
    )
    x_mesh = solve(sharded)
    assert len(x_mesh.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(x_mesh), x_one, atol=atol)
