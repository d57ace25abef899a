"""A dense-matrix linear operator with the same interface as the others: ``A x = M vec(x)``.

Meant for exact-posterior tests of the solvers (small problems with closed forms).

References:
    Spec ch. 7, Sect. 10.2 (exact posterior checks).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class DenseOperator:
    """``A x = M @ x.ravel()`` for images of a fixed shape; ``A^H y = (M^H y).reshape(shape)``.

    Attributes:
        matrix: ``[m, n]`` float32 or complex64, ``n = prod(image_shape)``.
        image_shape: the shape of one image, e.g. ``(H, W)`` (static).
        AAH_is_identity: whether ``M M^H = I`` (rows orthonormal); set by :meth:`create` (static).
    """

    matrix: jax.Array  # [m, n]
    image_shape: tuple[int, ...] = struct.field(pytree_node=False)
    AAH_is_identity: bool = struct.field(pytree_node=False, default=False)

    @classmethod
    def create(cls, matrix: jax.Array, image_shape: tuple[int, ...]) -> "DenseOperator":
        """Build the operator; checks the sizes and detects orthonormal rows (tol 1e-5).

        Example:
            >>> DenseOperator.create(jnp.eye(4)[:2], (2, 2)).AAH_is_identity
            True
        """
        matrix = jnp.asarray(matrix)
        image_shape = tuple(int(s) for s in image_shape)
        if matrix.ndim != 2 or matrix.shape[1] != int(np.prod(image_shape)):
            raise ValueError(
                f"matrix: expected [m, {int(np.prod(image_shape))}] for image_shape "
                f"{image_shape}, got shape {matrix.shape}"
            )
        gram = np.asarray(matrix @ jnp.conj(matrix).T)
        identity = bool(np.allclose(gram, np.eye(gram.shape[0]), atol=1e-5))
        return cls(matrix=matrix, image_shape=image_shape, AAH_is_identity=identity)

    def A(self, x: jax.Array) -> jax.Array:
        """Image ``image_shape`` -> measurement ``[m]``."""
        return self.matrix @ x.ravel()

    def A_adjoint(self, y: jax.Array) -> jax.Array:
        """Measurement ``[m]`` -> image ``image_shape``."""
        return (jnp.conj(self.matrix).T @ y).reshape(self.image_shape)

    def A_dagger(self, y: jax.Array) -> jax.Array:
        """Moore-Penrose pseudo-inverse ``M^+ y`` reshaped to the image."""
        return (jnp.linalg.pinv(self.matrix) @ y).reshape(self.image_shape)

    def project(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """``x + A^H (y - A x)``: the exact projection when ``AAH_is_identity``, else one unit
        Landweber step (erratum E10)."""
        return x + self.A_adjoint(y - self.A(x))
