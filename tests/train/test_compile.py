"""Ahead-of-time compilation: same results as jit, FLOPs and memory from XLA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gensynth.train import compile_aot, shard_batch

from .train_testkit import example_images, fresh_copy, mesh_and_fresh_state, tiny_train_step


def test_matmul_flops_are_hand_derived():
    n = 32
    compiled, stats = compile_aot(jax.jit(lambda a, b: a @ b), *[jax.ShapeDtypeStruct((n, n), jnp.float32)] * 2)
    assert stats.flops == 2 * n**3
    assert stats.argument_bytes == 2 * n * n * 4
    assert stats.output_bytes == n * n * 4
    assert stats.compile_s > 0 and stats.lower_s > 0
    a = np.eye(n, dtype=np.float32)
    np.testing.assert_array_equal(compiled(a, 2 * a), 2 * a)


def test_compiled_train_step_from_abstract_inputs_matches_jit():
    mesh, _, fresh_state = mesh_and_fresh_state()
    train_step = tiny_train_step()
    state = fresh_copy(fresh_state)
    batch = shard_batch({"image": example_images(8)}, mesh)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), (state, batch))
    compiled, stats = compile_aot(train_step, *abstract)
    assert stats.flops is not None and stats.flops > 0
    assert stats.temp_bytes is not None

    aot_state, aot_metrics = compiled(fresh_copy(state), batch)
    jit_state, jit_metrics = train_step(state, batch)
    assert float(aot_metrics["loss"]) == float(jit_metrics["loss"])
    for a, b in zip(jax.tree.leaves(aot_state), jax.tree.leaves(jit_state), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="jitted_fn"):
        compile_aot(lambda x: x, 1.0)
