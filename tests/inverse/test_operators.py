"""Property sweep over every forward operator (spec ch. 7, Sect. 10.2 items 1-3): the dot-product
adjoint test, A A^H = I and projection properties where claimed, and jit / vmap / grad /
abstract-shape behaviour. New operators join the sweep by being added to ``OPERATORS``."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth import inverse as gi

N = 16


def _operators():
    maps = gi.birdcage_maps((N, N), 4)
    full = jnp.ones((N, N), jnp.float32)
    est_maps = gi.estimate_coil_maps(gi.fft2c(maps), 8)
    rng = np.random.default_rng(0)
    ortho = np.linalg.qr(rng.standard_normal((N * N, 30)))[0].T  # [30, N*N] orthonormal rows
    return {
        "single_uniform1d": gi.SingleCoilMRI(jnp.asarray(gi.uniform1d((N, N), 4)[0])),
        "single_random1d": gi.SingleCoilMRI(jnp.asarray(gi.random1d((N, N), 4, seed=1)[0])),
        "single_gaussian1d": gi.SingleCoilMRI(jnp.asarray(gi.gaussian1d((N, N), 4, seed=2)[0])),
        "single_gaussian2d": gi.SingleCoilMRI(jnp.asarray(gi.gaussian2d((N, N), 4, seed=3)[0])),
        "single_poisson_vd": gi.SingleCoilMRI(jnp.asarray(gi.poisson_vd((N, N), 4, seed=4)[0])),
        "single_radial": gi.SingleCoilMRI(jnp.asarray(gi.radial((N, N), 4, seed=5)[0])),
        "sense_birdcage": gi.MultiCoilMRI(jnp.asarray(gi.random1d((N, N), 4)[0]), maps),
        "sense_estimated": gi.MultiCoilMRI(full, est_maps),
        "radon_sparse": gi.Radon.create(gi.sparse_view_angles(8), N),
        "radon_limited": gi.Radon.create(gi.limited_angle_angles(8, step_deg=15.0), N),
        "inpaint_box": gi.Inpaint(gi.box_mask((N, N), (4, 10, 3, 12))),
        "inpaint_random": gi.Inpaint(gi.random_pixel_mask((N, N), 0.5, seed=6)),
        "sr_2": gi.AvgPoolSR(2),
        "sr_4": gi.AvgPoolSR(4),
        "blur": gi.Blur.gaussian((N, N), 1.5),
        "dense_real": gi.DenseOperator.create(
            jnp.asarray(rng.standard_normal((30, N * N)), jnp.float32), (N, N)
        ),
        "dense_ortho": gi.DenseOperator.create(jnp.asarray(ortho, jnp.float32), (N, N)),
        "dense_complex": gi.DenseOperator.create(
            jnp.asarray(
                rng.standard_normal((30, N * N)) + 1j * rng.standard_normal((30, N * N)),
                jnp.complex64,
            ),
            (N, N),
        ),
    }


OPERATORS = _operators()
NAMES = sorted(OPERATORS)


def _is_complex(op) -> bool:
    return isinstance(op, (gi.SingleCoilMRI, gi.MultiCoilMRI)) or jnp.iscomplexobj(
        getattr(op, "matrix", jnp.zeros(()))
    )


def _random(rng, shape, complex_):
    """Test data from NumPy (no PRNG compilation needed)."""
    if complex_:
        return jnp.asarray(
            rng.standard_normal(shape) + 1j * rng.standard_normal(shape), jnp.complex64
        )
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _inputs(name):
    """Random images x, x2, x_true and a random measurement y of the right shapes and dtypes."""
    op = OPERATORS[name]
    c = _is_complex(op)
    rng = np.random.default_rng(0)
    x, x2, x_true = (_random(rng, (N, N), c) for _ in range(3))
    y_shape = jax.eval_shape(op.A, x).shape
    return x, x2, x_true, _random(rng, y_shape, c)


@jax.jit
def _properties(op, x, x2, x_true, y):
    """Everything the sweep checks, in ONE program per operator type (the operator is an
    argument, so operators of the same class and leaf shapes share the compilation)."""
    ax = op.A(x)
    ahy = op.A_adjoint(y)
    out = {
        "ax": ax,
        "ahax": op.A_adjoint(ax),
        "aahax": op.A(op.A_adjoint(ax)),
        "dot_lhs": jnp.vdot(ax, y),
        "dot_rhs": jnp.vdot(x, ahy),
        "dot_scale": jnp.linalg.norm(ax) * jnp.linalg.norm(y),
        "grad": jax.grad(lambda v: jnp.sum(jnp.abs(op.A(v) - y) ** 2))(x),
        "grad_expected": 2.0 * op.A_adjoint(ax - y),
    }
    ys = jax.vmap(op.A)(jnp.stack([x, 2.0 * x, -x]))
    out["vmap_a"], out["vmap_ah"] = ys, jax.vmap(op.A_adjoint)(ys)
    y_true = op.A(x_true)  # in the range of A
    p = op.project(x, y_true)
    out.update(
        y_true=y_true,
        aah_y_true=op.A(op.A_adjoint(y_true)),
        p=p,
        pp=op.project(p, y_true),
        ap=op.A(p),
        p2=op.project(x2, y_true),
        dc_p=gi.project(x, y_true, op),
    )
    if hasattr(op, "A_dagger"):
        out["a_dagger_y_true"] = op.A(op.A_dagger(y_true))
    return out


@functools.cache
def _results(name):
    return jax.device_get(_properties(OPERATORS[name], *_inputs(name)))


@pytest.mark.parametrize("name", NAMES)
def test_dot_product_adjoint(name):
    r = _results(name)
    assert abs(r["dot_lhs"] - r["dot_rhs"]) / r["dot_scale"] < 1e-5, (r["dot_lhs"], r["dot_rhs"])


@pytest.mark.parametrize("name", [n for n in NAMES if OPERATORS[n].AAH_is_identity])
def test_aah_identity_and_exact_projection(name):
    r = _results(name)
    x, x2, _, _ = _inputs(name)
    np.testing.assert_allclose(r["aah_y_true"], r["y_true"], atol=1e-5)  # A A^H = I on range
    np.testing.assert_allclose(r["pp"], r["p"], atol=1e-5)  # idempotent
    np.testing.assert_allclose(r["ap"], r["y_true"], atol=1e-5)  # consistent
    assert np.linalg.norm(r["p"] - r["p2"]) <= np.linalg.norm(x - x2) + 1e-5  # non-expansive
    np.testing.assert_allclose(r["dc_p"], r["p"], atol=1e-6)  # dc.project dispatches


# Radon's A_dagger is FBP, an approximate inverse; the others are exact right inverses on range(A).
EXACT_DAGGER = [n for n in NAMES if hasattr(OPERATORS[n], "A_dagger") and not n.startswith("radon")]


@pytest.mark.parametrize("name", EXACT_DAGGER)
def test_pseudo_inverse_round_trip(name):
    r = _results(name)
    np.testing.assert_allclose(r["a_dagger_y_true"], r["y_true"], rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("name", ["sense_birdcage", "radon_sparse", "blur", "dense_real", "sr_2"])
def test_non_identity_ops_say_so(name):
    r = _results(name)
    assert not OPERATORS[name].AAH_is_identity
    assert np.linalg.norm(r["aahax"] - r["ax"]) > 1e-2 * np.linalg.norm(r["ax"])


@pytest.mark.parametrize("name", NAMES)
def test_vmap_matches_single_and_abstract_shapes(name):
    r = _results(name)
    x, _, _, y = _inputs(name)
    np.testing.assert_allclose(r["vmap_a"][1], 2.0 * r["ax"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r["vmap_ah"][2], -r["ahax"], rtol=1e-4, atol=1e-4)
    abstract = jax.eval_shape(OPERATORS[name].A_adjoint, jax.ShapeDtypeStruct(y.shape, y.dtype))
    assert abstract.shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_grad_of_data_term(name):
    """grad ||A x - y||^2 = 2 A^H (A x - y) (JAX returns the conjugate for complex inputs)."""
    r = _results(name)
    expected = np.conj(r["grad_expected"]) if _is_complex(OPERATORS[name]) else r["grad_expected"]
    np.testing.assert_allclose(r["grad"], expected, rtol=1e-4, atol=1e-3)
