"""In-memory grain source and the seeded, sharded, checkpointable batch loader.

The loader is grain's `DataLoader` over a random-access source: an `IndexSampler`
draws a seeded permutation per epoch, `ShardByJaxProcess` gives each JAX process
(host) a disjoint part of every epoch, and `Batch` stacks records into dicts of
numpy arrays `[B, ...]`.

The iterator from `iter(loader)` has grain's `get_state() -> bytes` (UTF-8 JSON)
and `set_state(bytes)`. Save it with Orbax through grain's handler::

    import grain, orbax.checkpoint as ocp
    mngr.save(step, args=ocp.args.Composite(
        data_iter=grain.checkpoint.CheckpointSave(it), ...))
    mngr.restore(step, args=ocp.args.Composite(
        data_iter=grain.checkpoint.CheckpointRestore(it), ...))  # restores `it` in place
"""

from __future__ import annotations

import absl.flags
import grain
import numpy as np


class ArraySource:
    """Grain random-access source over in-memory images (and optional labels).

    Args:
        images: `[N, H, W, C]` or `[N, D, H, W, C]` array, channels-last; cast to
            float32 once (intensities are expected in [-1, 1], not checked).
        labels: optional `[N]` integer class labels; cast to int32.

    Record `i` is `{"image": float32 [H, W, C] (or [D, H, W, C])}` plus
    `"label": int32 scalar` when labels are given.

    Raises:
        ValueError: if `images` is not 4-D/5-D, is empty, or `labels` is not `[N]`.

    Example:
        >>> src = ArraySource(np.zeros((3, 8, 8, 1)), labels=[0, 1, 2])
        >>> len(src), src[2]["image"].shape, int(src[2]["label"])
        (3, (8, 8, 1), 2)
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None):
        images = np.asarray(images, dtype=np.float32)
        if images.ndim not in (4, 5) or images.shape[0] == 0:
            raise ValueError(
                "images: expected a non-empty [N, H, W, C] or [N, D, H, W, C] array, "
                f"got shape {images.shape}"
            )
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(
                    f"labels: expected integer shape ({images.shape[0]},) to match images, "
                    f"got {labels.dtype} {labels.shape}"
                )
            labels = labels.astype(np.int32)
        self._images = images
        self._labels = labels

    def __len__(self) -> int:
        return self._images.shape[0]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        record = {"image": self._images[index]}
        if self._labels is not None:
            record["label"] = self._labels[index]
        return record

    def __repr__(self) -> str:
        return f"ArraySource(images={self._images.shape}, labels={self._labels is not None})"


def make_loader(
    source,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_options: grain.sharding.ShardOptions | None = None,
    drop_remainder: bool = True,
    worker_count: int = 0,
) -> grain.DataLoader:
    """Builds a grain loader yielding batched dicts of numpy arrays.

    Args:
        source: grain random-access source (`__len__`, `__getitem__` returning a dict
            of arrays), e.g. `ArraySource`, `NiftiFolderSource`.
        batch_size: per-process batch size B (the global batch is B x processes).
        seed: shuffle seed in [0, 2**32); the same seed gives the same order.
        shuffle: draw a fresh seeded permutation each epoch.
        num_epochs: passes over the data; None repeats forever.
        shard_options: how records are split over hosts; default
            `grain.sharding.ShardByJaxProcess(drop_remainder=True)` (one disjoint
            shard per JAX process, equal sizes).
        drop_remainder: drop a final batch smaller than `batch_size`.
        worker_count: grain worker processes; 0 reads in this process. Workers
            need parsed absl flags: outside `absl.app` their defaults are marked parsed.

    Returns:
        A `grain.DataLoader`; iterating yields e.g. `{"image": float32 [B, H, W, C]}`
        and `iter(loader)` supports `get_state()` / `set_state()`.

    Raises:
        ValueError: for a non-positive `batch_size`, an empty source, or a seed
            out of range.

    Example:
        >>> loader = make_loader(ArraySource(np.zeros((10, 8, 8, 1))), batch_size=4, seed=0)
        >>> next(iter(loader))["image"].shape
        (4, 8, 8, 1)
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed: expected an int in [0, 2**32), got {seed}")
    if len(source) == 0:
        raise ValueError(f"source: expected at least one record, got empty {source!r}")
    if worker_count > 0 and not absl.flags.FLAGS.is_parsed():
        # grain's worker processes read absl flags; outside absl.app, use their defaults.
        absl.flags.FLAGS.mark_as_parsed()
    if shard_options is None:
        shard_options = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=shard_options,
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=seed,
    )
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[grain.transforms.Batch(batch_size, drop_remainder=drop_remainder)],
        worker_count=worker_count,
        shard_options=shard_options,
    )
