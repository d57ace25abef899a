"""MCG for CT (VE predictor-corrector, gradient and normalised back-projection DC in the
corrector): the view mask, the exact form of the view-mask filter of the gradient, the
annealed DC relaxation and its use step by step, NFE/VJP accounting, and the data fit on a tiny
Radon transform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.data.phantoms import shepp_logan
from gensynth.diffusion import VESDE, gaussian_score_fn
from gensynth.inverse.ct import Radon, fbp, limited_angle_angles, sparse_view_angles
from gensynth.inverse.dense import DenseOperator
from gensynth.inverse.mcg import mcg_ct, mcg_ct_lambdas, unmeasured_view_part, view_mask
from tests.inverse.posterior_kit import counted

N = 16
SDE = VESDE(sigma_min=0.01, sigma_max=20.0)
FULL_VIEWS = 60  # the reference's 180 would only make the tests slower
FULL = Radon.create(sparse_view_angles(FULL_VIEWS), N)
OP = Radon.create(sparse_view_angles(30), N)  # every 2nd view of FULL


def _problem(B=2):
    truth = jnp.asarray(shepp_logan(N), jnp.float32).reshape(N, N)
    y = jnp.broadcast_to(OP.A(truth), (B,) + OP.A(truth).shape)
    score = gaussian_score_fn(float(truth.mean()), float(truth.var()), SDE)
    return y, score


def test_view_mask_and_the_exact_form_of_the_view_filter():
    # The ramp filter and the back-projection act view by view, so FBP over the full set of a
    # sinogram zeroed on the measured views is the full FBP minus (V / V_full) times the FBP of
    # the measured views alone -- exactly, for any image. (It does NOT make A g = 0 on the
    # measured views: at 16 px, 30 of 180 views, both the measured and the unmeasured
    # projections of the filtered image shrink to ~0.64 of g's; see gensynth.inverse.mcg.)
    mask = view_mask(FULL, OP)
    assert np.array_equal(np.flatnonzero(np.asarray(mask)), np.arange(0, FULL_VIEWS, 2))
    arc = Radon.create(limited_angle_angles(20, step_deg=3.0), N)
    assert np.array_equal(np.flatnonzero(np.asarray(view_mask(FULL, arc))), np.arange(20))
    g = jnp.asarray(np.random.default_rng(0).normal(size=(N, N)), jnp.float32)

    @jax.jit
    def both(g):
        expected = fbp(FULL, FULL.A(g)) - (30 / FULL_VIEWS) * fbp(OP, OP.A(g))
        return unmeasured_view_part(FULL, mask, g), expected

    filtered, expected = both(g)
    np.testing.assert_allclose(np.asarray(filtered), np.asarray(expected), atol=1e-5)
    assert float(jnp.abs(filtered).max()) > 0.5  # the comparison is not between zeros
    with pytest.raises(ValueError, match="full set"):
        view_mask(FULL, Radon.create(sparse_view_angles(8), N))  # 22.5 degrees: off the grid
    with pytest.raises(ValueError, match="image_size"):
        view_mask(FULL, Radon.create(sparse_view_angles(30), 8))


def test_lambda_schedule_is_linear_and_used_step_by_step():
    np.testing.assert_allclose(np.asarray(mcg_ct_lambdas(5)), [1.0, 0.9, 0.8, 0.7, 0.6], atol=1e-7)
    # Step i's DC uses lam_i: with the same key, runs whose schedules share lam_0 agree after
    # step 0 and part at step 1; a different lam_start parts them at step 0.
    y, score = _problem()

    def traj(start, end):
        _, info = mcg_ct(
            jax.random.key(0),
            score,
            OP,
            y,
            full_views=FULL_VIEWS,
            sde=SDE,
            num_steps=4,
            lam_start=start,
            lam_end=end,
            trajectory=True,
        )
        return np.asarray(info["trajectory"])

    book, flat, lower = traj(1.0, 0.6), traj(1.0, 1.0), traj(0.8, 0.6)
    np.testing.assert_array_equal(book[0], flat[0])
    assert np.abs(book[1] - flat[1]).max() > 1e-3
    assert np.abs(book[0] - lower[0]).max() > 1e-3


def test_counts_and_data_fit_on_a_tiny_radon():
    # 25 steps on a 16 px phantom, 30 of 60 views, Gaussian prior matched to the phantom's
    # mean and variance: the DC in the corrector fits the data (relative residual measured 0.066;
    # at 50 steps 0.053 with weight 0.1 and 0.032 with weight 1: the gradient helps). Each step is
    # one corrector call with a VJP and one predictor call.
    y, score = _problem()
    counter = {}
    x, info = mcg_ct(
        jax.random.key(0),
        counted(score, counter),
        OP,
        y,
        full_views=FULL_VIEWS,
        sde=SDE,
        num_steps=25,
    )
    assert x.shape == (2, N, N) and np.all(np.isfinite(np.asarray(x)))
    assert counter == {"fwd": 50, "vjp": 25}
    assert info["nfe"] == 50 and info["vjps"] == 25 and info["needs_vjp"]
    residual = np.linalg.norm(np.asarray(jax.vmap(OP.A)(x) - y)) / np.linalg.norm(np.asarray(y))
    assert residual < 0.1, residual


def test_bad_arguments():
    y, score = _problem()
    with pytest.raises(ValueError, match="n_corrector"):
        mcg_ct(jax.random.key(0), score, OP, y, n_corrector=0)
    with pytest.raises(TypeError, match="Radon"):
        mcg_ct(jax.random.key(0), score, DenseOperator.create(jnp.eye(4), (2, 2)), y)
