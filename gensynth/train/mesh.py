"""Device mesh and the two shardings a data-parallel train step needs.

The batch is split over the mesh axis ``"data"``; parameters, optimiser state and
the train key are replicated. The same code runs on one CPU, 8 fake CPU devices,
one GPU or a multi-host pod (each process feeds its local part of the batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None, axis_names: Sequence[str] = (DATA_AXIS,)) -> jax.sharding.Mesh:
    """Builds a mesh with all devices on the first axis (``"data"`` by default).

    Axes are ``AxisType.Auto``: the default ``Explicit`` axis types make
    convolutions fail to trace under sharding-in-types.

    Args:
        num_devices: devices to use, the first ``num_devices`` of ``jax.devices()``;
            None uses all of them (across all processes).
        axis_names: mesh axis names; the first gets every device, any further axis
            (e.g. ``"fsdp"``) has size 1.

    Returns:
        A ``jax.sharding.Mesh`` of shape ``(num_devices, 1, ...)``.

    Raises:
        ValueError: if ``num_devices`` is not in ``[1, jax.device_count()]`` or
            ``axis_names`` is empty.

    Example:
        >>> make_mesh(1).shape
        OrderedDict([('data', 1)])
    """
    available = jax.device_count()
    if num_devices is None:
        num_devices = available
    if not 1 <= num_devices <= available:
        raise ValueError(f"num_devices: expected an int in [1, {available}], got {num_devices}")
    if not axis_names:
        raise ValueError("axis_names: expected at least one mesh axis name, got none")
    shape = (num_devices,) + (1,) * (len(axis_names) - 1)
    return jax.make_mesh(
        shape,
        tuple(axis_names),
        axis_types=(jax.sharding.AxisType.Auto,) * len(axis_names),
        devices=jax.devices()[:num_devices],
    )


def data_sharding(mesh: jax.sharding.Mesh, ndim: int = 1, *, batch_axis: int = 0) -> jax.NamedSharding:
    """Sharding that splits array axis ``batch_axis`` over the mesh's ``"data"`` axis.

    Args:
        mesh: the device mesh; must have a ``"data"`` axis.
        ndim: rank of the arrays it will place (a shorter spec also applies to
            higher-rank arrays, so 1 + ``batch_axis`` fits any batch leaf).
        batch_axis: which array axis is the batch axis B (1 for fused
            ``[k, B, ...]`` batches).

    Returns:
        ``NamedSharding(mesh, P(None, ..., "data", None, ...))`` of length ``ndim``.

    Raises:
        ValueError: if the mesh has no ``"data"`` axis or ``batch_axis >= ndim``.
    """
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh: expected a '{DATA_AXIS}' axis, got axes {mesh.axis_names}")
    if not 0 <= batch_axis < ndim:
        raise ValueError(f"batch_axis: expected an int in [0, {ndim}) for ndim={ndim}, got {batch_axis}")
    spec = [None] * ndim
    spec[batch_axis] = DATA_AXIS
    return jax.NamedSharding(mesh, jax.P(*spec))


def replicated(mesh: jax.sharding.Mesh) -> jax.NamedSharding:
    """Sharding that keeps a full copy of an array on every device of ``mesh``."""
    return jax.NamedSharding(mesh, jax.P())


def shard_batch(
    batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh, *, batch_axis: int = 0
) -> dict[str, jax.Array]:
    """Places this process's host batch on the mesh, split over ``"data"``.

    Each process passes its local part; the global batch is the concatenation
    over processes along ``batch_axis`` (``jax.make_array_from_process_local_data``),
    so this is correct on one host and on a pod alike.

    Args:
        batch: dict of host arrays ``[B_local, ...]`` (or ``[k, B_local, ...]`` with
            ``batch_axis=1`` for fused steps).
        mesh: the device mesh with a ``"data"`` axis.
        batch_axis: the array axis holding the batch.

    Returns:
        dict of global ``jax.Array`` with the same keys, sharded on ``batch_axis``.

    Raises:
        ValueError: if an array has too few axes, the leaves disagree on the
            batch size, or the global batch is not divisible by the data-axis size.

    Example:
        >>> mesh = make_mesh(1)
        >>> shard_batch({"image": np.zeros((4, 8, 8, 1))}, mesh)["image"].shape
        (4, 8, 8, 1)
    """
    sizes = {}
    for name, array in batch.items():
        if np.ndim(array) <= batch_axis:
            raise ValueError(
                f"batch[{name!r}]: expected at least {batch_axis + 1} axes (batch axis {batch_axis}), "
                f"got shape {np.shape(array)}"
            )
        sizes[name] = np.shape(array)[batch_axis]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"batch: expected one batch size on axis {batch_axis} for all keys, got {sizes}")
    data_size = mesh.shape[DATA_AXIS]
    global_batch = next(iter(sizes.values()), 0) * jax.process_count()
    if global_batch % data_size:
        raise ValueError(
            f"batch: global batch size {global_batch} is not divisible by the '{DATA_AXIS}' axis size "
            f"{data_size}; choose a batch size that is a multiple of it"
        )
    return {
        name: jax.make_array_from_process_local_data(
            data_sharding(mesh, np.ndim(array), batch_axis=batch_axis), np.asarray(array)
        )
        for name, array in batch.items()
    }
