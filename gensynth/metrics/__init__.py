"""Image-quality metrics against a reference: PSNR, SSIM and NMSE (per image, magnitude images)."""

from gensynth.metrics.image_quality import nmse, psnr, ssim

__all__ = ["nmse", "psnr", "ssim"]
