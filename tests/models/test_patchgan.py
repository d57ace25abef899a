"""PatchGAN: the receptive-field formula equals the footprint of one output pixel's input gradient
(70 px for pix2pix's n_layers=3), output shapes, norms, and spectral normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.models.patchgan import PatchGAN, receptive_field


def _probed_receptive_field(disc: PatchGAN, size: int) -> list[int]:
    """Extent along each spatial axis of the nonzero input gradient of the central output pixel."""
    d = disc.spatial_dims
    graphdef, state = nnx.split(disc)

    @jax.jit
    def grad_of_centre(state, x):
        model = nnx.merge(graphdef, state)

        def centre(x):
            out = model(x)
            return out[(0,) + tuple(n // 2 for n in out.shape[1:-1]) + (0,)]

        return jax.grad(centre)(x)

    x = jax.random.normal(jax.random.key(0), (1,) + (size,) * d + (1,))
    footprint = np.abs(np.asarray(grad_of_centre(state, x)))[0, ..., 0] > 0
    extents = []
    for axis in range(d):
        hit = np.nonzero(footprint.any(axis=tuple(a for a in range(d) if a != axis)))[0]
        assert hit.min() > 0 and hit.max() < size - 1  # the window lies inside the input
        extents.append(int(hit.max() - hit.min() + 1))
    return extents


@pytest.mark.parametrize(("spatial_dims", "n_layers", "size"), [(2, 1, 32), (2, 3, 96), (3, 1, 24)])
def test_receptive_field_equals_gradient_footprint(spatial_dims, n_layers, size):
    # No norm: instance/group norm couple all positions through their statistics.
    disc = PatchGAN(1, spatial_dims=spatial_dims, channels=4, n_layers=n_layers, norm="none", rngs=nnx.Rngs(0))
    assert _probed_receptive_field(disc, size) == [receptive_field(n_layers)] * spatial_dims


def test_standard_pix2pix_patch_is_70_px():
    assert receptive_field(3, kernel_size=4) == 70
    assert receptive_field(2) == 34 and receptive_field(4) == 142


@pytest.mark.parametrize("norm", ["instance", "group", "none"])
def test_output_shapes_and_features(norm):
    def run(spatial_dims, size):
        disc = PatchGAN(2, spatial_dims=spatial_dims, channels=8, n_layers=3, norm=norm, groups=4, rngs=nnx.Rngs(0))
        return disc.features(jnp.zeros((2,) + (size,) * spatial_dims + (2,)))

    feats = jax.eval_shape(lambda: run(2, 64))
    # 64 -> 32 -> 16 -> 8 (stride 2) -> 7 -> 6 (stride 1, kernel 4, padding 1)
    assert [f.shape for f in feats] == [(2, 32, 32, 8), (2, 16, 16, 16), (2, 8, 8, 32), (2, 7, 7, 64), (2, 6, 6, 1)]
    assert jax.eval_shape(lambda: run(3, 32))[-1].shape == (2, 2, 2, 2, 1)


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ValueError, match="norm"):
        PatchGAN(1, norm="batch", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="n_layers"):
        PatchGAN(1, n_layers=0, rngs=nnx.Rngs(0))
    disc = PatchGAN(1, channels=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="must have shape"):
        disc(jnp.zeros((1, 32, 32, 3)))


def test_spectral_norm_power_iteration_brings_each_kernel_to_unit_spectral_norm():
    disc = PatchGAN(1, channels=4, n_layers=2, norm="none", spectral_norm=True, rngs=nnx.Rngs(0))
    graphdef, params, stats = nnx.split(disc, nnx.Param, nnx.BatchStat)

    @jax.jit
    def iterate(params, stats, x):
        def body(_, stats):
            model = nnx.merge(graphdef, params, stats, copy=True)
            model(x, update_stats=True)
            return nnx.split(model, nnx.Param, nnx.BatchStat)[2]

        stats = jax.lax.fori_loop(0, 50, body, stats)
        model = nnx.merge(graphdef, params, stats)
        return [layer._normalized_kernel(False) for layer in model.convs]

    kernels = iterate(params, stats, jnp.zeros((1, 32, 32, 1)))
    for kernel in kernels:
        sigma = np.linalg.svd(np.asarray(kernel).reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        np.testing.assert_allclose(sigma, 1.0, rtol=1e-3)
    # Without update_stats the forward pass leaves the power-iteration vectors as they were.
    before = [np.asarray(v) for v in jax.tree.leaves(stats)]
    disc(jnp.zeros((1, 32, 32, 1)))
    after = [np.asarray(v) for v in jax.tree.leaves(nnx.state(disc, nnx.BatchStat))]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
