"""Adversarial training: GAN losses, gradient penalties and feature matching."""

from gensynth.gan.losses import (
    ADVERSARIAL_LOSSES,
    bce_d_loss,
    bce_g_loss,
    feature_matching_loss,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    r1_penalty,
    wgan_d_loss,
)

__all__ = [
    "ADVERSARIAL_LOSSES",
    "bce_d_loss",
    "bce_g_loss",
    "feature_matching_loss",
    "gradient_penalty",
    "hinge_d_loss",
    "hinge_g_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "r1_penalty",
    "wgan_d_loss",
]
