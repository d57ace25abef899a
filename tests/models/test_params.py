"""Tests for gensynth.models.count_params against a layer-by-layer count of the ADM U-Net."""

import pytest
from flax import nnx

from gensynth.models import UNet, count_params


def _adm_count(in_ch, out_ch, k, ch, mult, nrb, attn, num_classes=None, context_dim=None):
    """Hand count: conv k^d taps, ResBlocks with scale-shift (E x 2C) time projections, attention
    with GN + fused qkv + output projection, cross-attention with GN + q + kv + output."""
    emb = 4 * ch
    total = ch * emb + emb + emb * emb + emb  # time MLP
    if num_classes is not None:
        total += (num_classes + 1) * emb

    def res(a, b):
        return 2 * a + (k * a * b + b) + (emb * 2 * b + 2 * b) + 2 * b + (k * b * b + b) + (a * b + b if a != b else 0)

    def att(c):
        n = 2 * c + (c * 3 * c + 3 * c) + (c * c + c)
        if context_dim is not None:
            n += 2 * c + (c * c + c) + (context_dim * 2 * c + 2 * c) + (c * c + c)
        return n

    total += k * in_ch * ch + ch
    skips, c = [ch], ch
    for level, m in enumerate(mult):
        for _ in range(nrb):
            total += res(c, m * ch) + (att(m * ch) if level in attn else 0)
            c = m * ch
            skips.append(c)
        if level < len(mult) - 1:
            total += k * c * c + c
            skips.append(c)
    total += 2 * res(c, c) + att(c)
    for level in reversed(range(len(mult))):
        for _ in range(nrb + 1):
            total += res(c + skips.pop(), mult[level] * ch) + (att(mult[level] * ch) if level in attn else 0)
            c = mult[level] * ch
        if level > 0:
            total += k * c * c + c
    return total + 2 * c + k * c * out_ch + out_ch


def test_reference_config_count():
    # The benchmark reference config. MONAI's DiffusionModelUNet of the same shape has 18,534,017
    # parameters: it adds the time embedding (E x C per ResBlock); ADM's scale-shift norm projects to
    # 2C, which adds sum(E * C + C) = 3392 * 257 = 871,744 over the 22 ResBlocks.
    net = nnx.eval_shape(lambda: UNet(1, 1, rngs=nnx.Rngs(0)))
    assert count_params(net) == _adm_count(1, 1, 9, 64, (1, 2, 2, 4), 2, (2, 3)) == 19_405_761
    assert count_params(net) - 18_534_017 == 3392 * 257


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_conditioned_count(spatial_dims):
    net = nnx.eval_shape(
        lambda: UNet(2, 4, spatial_dims=spatial_dims, channels=16, channel_mult=(1, 2, 3), num_res_blocks=2,
                     attention_levels=(1,), head_dim=8, groups=8, num_classes=5, context_dim=12, rngs=nnx.Rngs(0))
    )  # fmt: skip
    k = 3**spatial_dims
    assert count_params(net) == _adm_count(2, 4, k, 16, (1, 2, 3), 2, (1,), num_classes=5, context_dim=12)


def test_count_linear():
    assert count_params(nnx.Linear(3, 4, rngs=nnx.Rngs(0))) == 3 * 4 + 4
