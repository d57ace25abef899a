"""Parameter counting for nnx modules."""

import jax
from flax import nnx


def count_params(model: nnx.Module) -> int:
    """Number of scalar parameters (elements of all `nnx.Param` leaves) in `model`.

    >>> count_params(nnx.Linear(3, 4, rngs=nnx.Rngs(0)))
    16
    """
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
