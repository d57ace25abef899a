"""Complex-image operators restricted to real images (the real-part convention).

A real-valued network (one channel) can still solve MRI problems: the unknown is a real image
and the operator is the complex one composed with the embedding R^n -> C^n.
"""

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RealImage:
    """A complex-image operator restricted to real images (the real-part convention).

    ``A_r x = A x`` for real ``x [H, W]``; ``A_r^T y = Re(A^H y)`` is its exact adjoint under
    the real inner product ``Re(u^H v)``. ``A_r A_r^T != I`` even when ``A A^H = I``, so
    :meth:`project` is one unit Landweber step (a descent step since ``||A_r|| <= ||A|| <= 1``
    for the orthonormal-FFT MRI operators).

    Attributes:
      op: the complex operator (``SingleCoilMRI`` or ``MultiCoilMRI``).
    """

    op: Any
    AAH_is_identity: ClassVar[bool] = False

    def A(self, x: jax.Array) -> jax.Array:
        """Real image ``[H, W]`` -> complex measurement (the wrapped operator's shape)."""
        return self.op.A(x.astype(jnp.complex64))

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        """Complex measurement -> real image ``[H, W]`` float32."""
        return jnp.real(self.op.A_adjoint(y))

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """One unit Landweber step ``x + Re(A^H (y - A x))`` on real ``x [H, W]``."""
        return x + self.A_adjoint(y - self.A(x))
