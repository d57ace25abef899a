"""Elementwise Gaussian KL and the discretised Gaussian decoder used by the VLB terms.

References:
  Ho et al. 2020, Sect. 3.3 (discretised decoder); Nichol & Dhariwal 2021, Sect. 3.1 (L_vlb).
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtr


def normal_kl(
    mean1: jax.Array, logvar1: jax.Array, mean2: jax.Array, logvar2: jax.Array
) -> jax.Array:
    """Elementwise ``KL(N(mean1, e^logvar1) || N(mean2, e^logvar2))`` in nats.

    .. math::
      \\tfrac12\\big(-1 + l_2 - l_1 + e^{l_1 - l_2} + (m_1 - m_2)^2 e^{-l_2}\\big)

    Args:
      mean1, logvar1: first Gaussian (any broadcastable shapes).
      mean2, logvar2: second Gaussian.

    Returns:
      The KL, broadcast shape of the inputs.

    >>> float(normal_kl(0.0, 0.0, 0.0, 0.0))
    0.0

    References:
      Spec ch. 2, Sect. 6 item 5.
    """
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * jnp.exp(-logvar2)
    )


def discretized_gaussian_log_likelihood(
    x: jax.Array, mean: jax.Array, log_scale: jax.Array
) -> jax.Array:
    """Log-probability of 8-bit data under a Gaussian integrated over its 2/255-wide bin.

    .. math::
      p(x) = \\Phi\\big(\\tfrac{x + 1/255 - \\mu}{\\sigma}\\big)
           - \\Phi\\big(\\tfrac{x - 1/255 - \\mu}{\\sigma}\\big)

    with the lower bound replaced by ``-inf`` at ``x = -1`` and the upper by ``+inf`` at ``x = 1``,
    so the 256 bin probabilities sum to one.

    Args:
      x: data on the 256-level grid ``k/127.5 - 1`` in [-1, 1], any shape.
      mean: ``mu``, broadcastable to ``x``.
      log_scale: ``log sigma`` (log standard deviation), broadcastable to ``x``.

    Returns:
      Elementwise log-likelihood in nats, shape of ``x``.

    References:
      Ho et al. 2020, Eq. 13; spec ch. 2, Sect. 2.3 (``L_0``).
    """
    inv_scale = jnp.exp(-log_scale)
    upper = (x - mean + 1.0 / 255.0) * inv_scale
    lower = (x - mean - 1.0 / 255.0) * inv_scale
    # Difference of CDFs on the side of the mean where it does not cancel catastrophically.
    delta = jnp.where(lower > 0, ndtr(-lower) - ndtr(-upper), ndtr(upper) - ndtr(lower))
    log_delta = jnp.log(jnp.maximum(delta, 1e-12))
    return jnp.where(x < -0.999, log_ndtr(upper), jnp.where(x > 0.999, log_ndtr(-lower), log_delta))
