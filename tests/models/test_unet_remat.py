"""U-Net rematerialisation: same loss and gradients as without it, less temporary memory in the
compiled backward pass (XLA's own memory analysis), and a clear error for an unknown policy."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gensynth.models.unet import UNet

SIZES = {"channels": 8, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_levels": (), "head_dim": 8, "groups": 4}


def _net(remat, dropout=0.0):
    return UNet(1, 1, spatial_dims=3, dropout=dropout, remat=remat, rngs=nnx.Rngs(0), **SIZES)


def _loss_and_grad_fn(graphdef):
    """Jitted `(params, x, t, key) -> (loss, grads)` of a mean-square output (dropout on)."""

    def loss_fn(params, x, t, key):
        return jnp.mean(nnx.merge(graphdef, params)(x, t, dropout_key=key) ** 2)

    return jax.jit(jax.value_and_grad(loss_fn))


def _inputs():
    """`x` [2, 8, 8, 8, 1], `t` [2] and a dropout key."""
    return jax.random.normal(jax.random.key(1), (2, 8, 8, 8, 1)), jnp.array([3, 700]), jax.random.key(2)


@pytest.mark.parametrize("remat", [True, "dots_saveable"])
def test_remat_keeps_loss_and_gradients(remat):
    graphdef, params = nnx.split(_net(False, dropout=0.1))
    graphdef_remat, params_remat = nnx.split(_net(remat, dropout=0.1))
    # zero-initialised head convs would give zero gradients almost everywhere: perturb every leaf
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(5), p.shape), params)
    assert jax.tree.structure(params) == jax.tree.structure(params_remat)  # same parameters, one graph each

    loss, grads = _loss_and_grad_fn(graphdef)(params, *_inputs())
    loss_remat, grads_remat = _loss_and_grad_fn(graphdef_remat)(params, *_inputs())
    assert float(loss) > 0
    np.testing.assert_allclose(float(loss_remat), float(loss), rtol=1e-6)
    for g, g_remat in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_remat), strict=True):
        np.testing.assert_allclose(np.asarray(g_remat), np.asarray(g), rtol=1e-5, atol=1e-6 * float(np.abs(g).max()))
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 0


# Run in a fresh process: XLA flags are read once per process. XLA's CPU backend schedules for
# concurrency by default and then hoists the recomputation into the forward pass, which undoes
# remat's saving (measured: equal temp bytes with and without); its memory-minimising scheduler,
# like the GPU backend's, keeps the recomputation in the backward pass.
_TEMP_BYTES_SCRIPT = """
import json, os
import jax, jax.numpy as jnp
from flax import nnx
from gensynth.models.unet import UNet

jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/gensynth/jax-tests"))

temps = {}
for remat in (False, True):
    net = UNet(1, 1, spatial_dims=3, channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(),
               head_dim=8, groups=4, remat=remat, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(net)
    loss_fn = lambda params, x, t: jnp.mean(nnx.merge(graphdef, params)(x, t) ** 2)
    abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    x = jax.ShapeDtypeStruct((1, 16, 16, 16, 1), jnp.float32)
    compiled = jax.jit(jax.value_and_grad(loss_fn)).lower(abstract, x, jnp.array([3])).compile()
    temps[str(remat)] = compiled.memory_analysis().temp_size_in_bytes
print(json.dumps(temps))
"""


def test_remat_lowers_compiled_temp_memory():
    """Three levels (16^3, 8^3, 4^3): the full-resolution activations, not the middle attention, dominate."""
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _TEMP_BYTES_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    temps = json.loads(done.stdout.strip().splitlines()[-1])
    activation = 16**3 * 8 * 4  # bytes of one float32 activation at full resolution
    assert temps["True"] < temps["False"] - 4 * activation, temps


@pytest.mark.parametrize("remat", ["everything", "nothing", 1])
def test_unknown_policy_is_refused(remat):
    with pytest.raises(ValueError, match="remat must be"):
        _net(remat)
