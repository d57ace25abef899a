"""Vector quantisation with an EMA-updated codebook and dead-code restart (VQ-VAE / VQ-GAN).

The codebook update is a set of pure functions on explicit arrays (`CodebookState`), so a jitted
train step calls them after its gradient step; `VectorQuantizer` is the nnx module that holds the
codebook (and its EMA statistics, as `CodebookVariable`s, which are not `nnx.Param`: no optimiser
touches them) and quantises encoder outputs with a straight-through gradient.

Under a data-parallel mesh the batch sums in `ema_codebook_update` are global (XLA reduces them
across devices), so every device keeps the same codebook.

References:
  van den Oord et al., "Neural Discrete Representation Learning", NeurIPS 2017 (VQ-VAE, EMA
  update in its appendix); Razavi et al., "Generating Diverse High-Fidelity Images with VQ-VAE-2",
  NeurIPS 2019; Dhariwal et al., "Jukebox", 2020 (dead-code restart); Ge et al., TATS, ECCV 2022
  (the restart rule DiffTumor uses).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from gensynth.models.autoencoder_losses import vq_codebook_loss, vq_commitment_loss


@struct.dataclass
class CodebookState:
    """The codebook and its EMA statistics.

    Attributes:
      codebook: float32 `[K, D]`, the code vectors e_k.
      cluster_size: float32 `[K]`, EMA of the number of vectors assigned to each code (N_k).
      embed_sum: float32 `[K, D]`, EMA of the sum of the vectors assigned to each code (m_k).
      unused_steps: int32 `[K]`, updates since each code was last assigned a vector.
    """

    codebook: jax.Array
    cluster_size: jax.Array
    embed_sum: jax.Array
    unused_steps: jax.Array


def init_codebook_state(codebook: jax.Array) -> CodebookState:
    """EMA state for `codebook` `[K, D]` as if each code had been assigned itself once
    (N_k = 1, m_k = e_k), so the first update moves unassigned codes only by the Laplace smoothing."""
    codebook = jnp.asarray(codebook, jnp.float32)
    k = codebook.shape[0]
    return CodebookState(codebook, jnp.ones((k,), jnp.float32), codebook, jnp.zeros((k,), jnp.int32))


def vq_nearest(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """Index of the nearest code (squared Euclidean distance) for every vector.

    Distances `|z|^2 - 2 z.e + |e|^2` are computed in float32; the `[N, K]` distance matrix is
    materialised (N = number of vectors).

    Args:
      z: `[..., D]` vectors, any float dtype.
      codebook: `[K, D]` code vectors.

    Returns:
      int32 `[...]` indices in `0..K-1`.

    >>> vq_nearest(jnp.array([[0.9], [-2.0]]), jnp.array([[0.0], [1.0], [-1.0]])).tolist()
    [1, 2]
    """
    if z.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"z: expected last axis {codebook.shape[-1]} (code dim D), got shape {z.shape}")
    flat = z.reshape(-1, z.shape[-1]).astype(jnp.float32)  # [N, D]
    e = codebook.astype(jnp.float32)  # [K, D]
    dist = jnp.sum(flat**2, -1, keepdims=True) - 2.0 * flat @ e.T + jnp.sum(e**2, -1)[None]  # [N, K]
    return jnp.argmin(dist, axis=-1).astype(jnp.int32).reshape(z.shape[:-1])


def ema_codebook_update(
    state: CodebookState, z: jax.Array, indices: jax.Array, *, decay: float, eps: float = 1e-5
) -> CodebookState:
    """One EMA step of the codebook towards the mean of the vectors assigned to each code.

    .. math::
      N_k \\leftarrow d N_k + (1 - d) n_k, \\quad m_k \\leftarrow d m_k + (1 - d) s_k, \\quad
      e_k = m_k / \\hat N_k, \\quad \\hat N_k = \\frac{N_k + \\epsilon}{n + K \\epsilon} n

    with n_k the number and s_k the sum of the vectors of this batch assigned to code k,
    n = sum_k N_k (Laplace smoothing keeps unused codes from dividing by zero), d = `decay`,
    epsilon = `eps`. `unused_steps` is reset to 0 for assigned codes and incremented otherwise.

    Args:
      state: the current `CodebookState` (K codes of dimension D).
      z: `[..., D]` encoder outputs (treated as constants).
      indices: int `[...]` their assigned codes (`vq_nearest`).
      decay: d in [0, 1).
      eps: Laplace smoothing epsilon > 0.

    Returns:
      The updated `CodebookState`.
    """
    num_codes = state.codebook.shape[0]
    flat = jax.lax.stop_gradient(z).reshape(-1, z.shape[-1]).astype(jnp.float32)  # [N, D]
    onehot = jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=jnp.float32)  # [N, K]
    counts = onehot.sum(0)  # [K]
    sums = onehot.T @ flat  # [K, D]
    cluster_size = decay * state.cluster_size + (1.0 - decay) * counts
    embed_sum = decay * state.embed_sum + (1.0 - decay) * sums
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + num_codes * eps) * total  # [K]
    unused = jnp.where(counts > 0, 0, state.unused_steps + 1).astype(jnp.int32)
    return CodebookState(embed_sum / smoothed[:, None], cluster_size, embed_sum, unused)


def dead_code_mask(state: CodebookState, *, dead_after: int, min_usage: float = 0.0) -> jax.Array:
    """bool `[K]`: codes unassigned for `dead_after` (>= 1) updates, or whose EMA usage N_k is
    below `min_usage` (TATS / DiffTumor use 1.0; 0 disables that rule)."""
    if dead_after < 1:
        raise ValueError(f"dead_after: expected an int >= 1 (updates), got {dead_after}")
    return (state.unused_steps >= dead_after) | (state.cluster_size < min_usage)


def restart_dead_codes(
    key: jax.Array, state: CodebookState, z: jax.Array, dead: jax.Array, *, jitter: float = 0.0
) -> CodebookState:
    """Re-initialises the codes marked `dead` to random encoder outputs of the batch.

    Each dead code k gets `z_j + jitter * noise` for a uniformly drawn vector j (with replacement),
    and its statistics restart as if it had been assigned that vector once (N_k = 1, m_k = e_k,
    unused 0). Live codes are unchanged bit for bit. Calling it with every code dead initialises
    the codebook from data (the recipe does so at step 0).

    Args:
      key: PRNG key for the draw (and the jitter).
      state: the current `CodebookState`.
      z: `[..., D]` encoder outputs of the batch.
      dead: bool `[K]`, e.g. `dead_code_mask(state, ...)`.
      jitter: standard deviation of Gaussian noise added to the drawn vectors (TATS: 0.01 / sqrt(D)).

    Returns:
      The updated `CodebookState`.
    """
    num_codes = state.codebook.shape[0]
    flat = jax.lax.stop_gradient(z).reshape(-1, z.shape[-1]).astype(jnp.float32)  # [N, D]
    pick_key, noise_key = jax.random.split(key)
    new = flat[jax.random.randint(pick_key, (num_codes,), 0, flat.shape[0])]  # [K, D]
    if jitter:
        new = new + jitter * jax.random.normal(noise_key, new.shape)
    row = dead[:, None]
    return CodebookState(
        codebook=jnp.where(row, new, state.codebook),
        cluster_size=jnp.where(dead, 1.0, state.cluster_size),
        embed_sum=jnp.where(row, new, state.embed_sum),
        unused_steps=jnp.where(dead, 0, state.unused_steps).astype(jnp.int32),
    )


def codebook_perplexity(indices: jax.Array, num_codes: int) -> jax.Array:
    """exp(entropy) of the code usage in `indices` (int `[...]`): 1 when one code is used,
    K when all K are used equally. float32 scalar."""
    p = jnp.mean(jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=jnp.float32), axis=0)  # [K]
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


class CodebookVariable(nnx.Variable):
    """Non-trainable codebook state (EMA codebook and its statistics)."""


class VectorQuantizer(nnx.Module):
    """Nearest-code quantisation of `[..., D]` vectors with a straight-through gradient.

    With `ema=True` the codebook is a `CodebookVariable` updated by `ema_codebook_update` (no
    gradient reaches it); with `ema=False` it is an `nnx.Param` trained by the codebook loss.

    Args:
      num_codes: codebook size K.
      dim: code dimension D.
      ema: EMA codebook (True) or gradient-trained codebook (False).
      rngs: `params` stream; codes start uniform in [-1/K, 1/K] (VQ-VAE).
    """

    def __init__(self, num_codes: int, dim: int, *, ema: bool = True, rngs: nnx.Rngs):
        if num_codes < 2 or dim < 1:
            raise ValueError(f"num_codes must be >= 2 and dim >= 1, got num_codes={num_codes}, dim={dim}")
        self.num_codes, self.dim, self.ema = num_codes, dim, ema
        init = jax.random.uniform(rngs.params(), (num_codes, dim), jnp.float32, -1.0 / num_codes, 1.0 / num_codes)
        if ema:
            state = init_codebook_state(init)
            self.codebook = CodebookVariable(state.codebook)
            self.cluster_size = CodebookVariable(state.cluster_size)
            self.embed_sum = CodebookVariable(state.embed_sum)
            self.unused_steps = CodebookVariable(state.unused_steps)
        else:
            self.codebook = nnx.Param(init)

    def codebook_state(self) -> CodebookState:
        """The EMA `CodebookState` (EMA quantizers only)."""
        self._require_ema()
        return CodebookState(self.codebook[...], self.cluster_size[...], self.embed_sum[...], self.unused_steps[...])

    def set_codebook_state(self, state: CodebookState) -> None:
        """Writes `state` into the module's variables (EMA quantizers only)."""
        self._require_ema()
        self.codebook[...] = state.codebook
        self.cluster_size[...] = state.cluster_size
        self.embed_sum[...] = state.embed_sum
        self.unused_steps[...] = state.unused_steps

    def _require_ema(self) -> None:
        if not self.ema:
            raise ValueError("this VectorQuantizer has a gradient-trained codebook (ema=False): no EMA state")

    def lookup(self, indices: jax.Array) -> jax.Array:
        """Code vectors float32 `[..., D]` for int `indices` `[...]`."""
        return jnp.take(self.codebook[...], indices, axis=0)

    def __call__(self, z_e: jax.Array) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """Quantises `z_e` `[..., D]`.

        Returns:
          `(z_q, indices, terms)`: `z_q` `[..., D]` in the dtype of `z_e`, equal to the nearest
          codes in value with gradient identity w.r.t. `z_e` (`z_e + sg(e - z_e)`); `indices`
          int32 `[...]`; `terms` = {"commitment": mean |z_e - sg(e)|^2, "codebook": mean
          |sg(z_e) - e|^2} (float32 scalars; the codebook term only has a gradient when `ema=False`).
        """
        indices = vq_nearest(jax.lax.stop_gradient(z_e), self.codebook[...])
        e = self.lookup(indices)  # [..., D] float32
        terms = {"commitment": vq_commitment_loss(z_e, e, beta=1.0), "codebook": vq_codebook_loss(z_e, e)}
        z_q = z_e + jax.lax.stop_gradient(e.astype(z_e.dtype) - z_e)
        return z_q, indices, terms
