"""Figures people would rather see than read: image grids and training curves (PNG, atomic).

>>> import numpy as np
>>> image_grid(np.zeros((6, 8, 8, 1)), ncols=3).shape
(19, 28)
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np

from gensynth.runs import atomic_write_bytes


def image_grid(images: np.ndarray, *, ncols: int = 8, pad: int = 1) -> np.ndarray:
    """Tiles images into one array.

    Args:
      images: [N, H, W, C] with C in {1, 3}, any range (shown as given; see `save_image_grid`).
      ncols: images per row.
      pad: pixels of border between tiles (filled with the minimum value).

    Returns:
      [rows*(H+pad)+pad, ncols*(W+pad)+pad] for C=1, or with a trailing 3 for C=3.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images: expected [N, H, W, 1|3], got shape {images.shape}")
    n, h, w, c = images.shape
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), images.min(), images.dtype)
    for i, image in enumerate(images):
        r, q = divmod(i, ncols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = image
    return grid[..., 0] if c == 1 else grid


def save_figure(fig, path: str | os.PathLike) -> None:
    """Writes a matplotlib ``Figure`` as PNG at ``path`` atomically (at the figure's dpi)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def save_image_grid(
    path: str | os.PathLike,
    images: np.ndarray,
    *,
    ncols: int = 8,
    value_range: tuple[float, float] = (-1.0, 1.0),
    title: str | None = None,
) -> None:
    """Writes a grid of images [N, H, W, 1|3] to a PNG, clipping to `value_range`."""
    from matplotlib.figure import Figure

    low, high = value_range
    grid = np.clip((image_grid(np.asarray(images, np.float32), ncols=ncols) - low) / (high - low), 0, 1)
    height, width = grid.shape[:2]
    scale = max(1.0, 512 / max(height, width))
    fig = Figure(figsize=(width * scale / 100, height * scale / 100 + (0.3 if title else 0)), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    save_figure(fig, path)


def save_curve(
    path: str | os.PathLike,
    steps: Sequence[float],
    values: Sequence[float],
    *,
    ylabel: str = "loss",
    title: str | None = None,
    smooth: int = 0,
) -> None:
    """Writes a line plot of `values` over `steps` (log-scale y), with an optional moving average."""
    from matplotlib.figure import Figure

    steps = np.asarray(steps, np.float64)
    values = np.asarray(values, np.float64)
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    ax.plot(steps, values, lw=0.8, alpha=0.5 if smooth > 1 else 1.0, label=ylabel)
    if smooth > 1 and len(values) >= smooth:
        kernel = np.ones(smooth) / smooth
        ax.plot(steps[smooth - 1 :], np.convolve(values, kernel, mode="valid"), lw=1.5, label=f"{ylabel} (mean of {smooth})")
        ax.legend()
    if np.all(values > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    save_figure(fig, path)
