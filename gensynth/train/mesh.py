"""Device mesh and the shardings of a data-parallel / FSDP train step.

Every mesh has two axes, ``("data", "fsdp")``. The batch is split over both of them
(each device sees its own examples); parameters, optimiser state and EMA follow
``param_sharding``: replicated when the ``"fsdp"`` axis has size 1 (pure data
parallelism), each large leaf split over ``"fsdp"`` otherwise (fully sharded data
parallelism: XLA gathers a parameter where it is used and reduce-scatters its
gradient). The same code runs on one CPU, 8 fake CPU devices, one GPU or a
multi-host pod (each process feeds its local part of the batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # the batch is split over both axes
FSDP_MIN_SIZE = 2**10  # leaves with fewer elements stay replicated under FSDP


def make_mesh(num_devices: int | None = None, *, fsdp: int = 1) -> jax.sharding.Mesh:
    """Builds a ``("data", "fsdp")`` mesh of shape ``(num_devices // fsdp, fsdp)``.

    Axes are ``AxisType.Auto``: the default ``Explicit`` axis types make
    convolutions fail to trace under sharding-in-types. ``fsdp=1`` is pure data
    parallelism; ``fsdp=num_devices`` shards the parameters over every device.

    Args:
        num_devices: devices to use, the first ``num_devices`` of ``jax.devices()``;
            None uses all of them (across all processes).
        fsdp: size of the ``"fsdp"`` axis, over which ``param_sharding`` splits the
            parameters; must divide ``num_devices``.

    Returns:
        A ``jax.sharding.Mesh`` with axes ``("data", "fsdp")``.

    Raises:
        ValueError: if ``num_devices`` is not in ``[1, jax.device_count()]`` or
            ``fsdp`` does not divide it.

    Example:
        >>> make_mesh(1).shape
        OrderedDict([('data', 1), ('fsdp', 1)])
    """
    available = jax.device_count()
    if num_devices is None:
        num_devices = available
    if not 1 <= num_devices <= available:
        raise ValueError(f"num_devices: expected an int in [1, {available}], got {num_devices}")
    if fsdp < 1 or num_devices % fsdp:
        raise ValueError(f"fsdp: expected a positive divisor of num_devices={num_devices}, got {fsdp}")
    return jax.make_mesh(
        (num_devices // fsdp, fsdp),
        BATCH_AXES,
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
        devices=jax.devices()[:num_devices],
    )


def _batch_axes(mesh: jax.sharding.Mesh) -> tuple[str, ...]:
    """The mesh axes the batch is split over: ``"data"`` and, if present, ``"fsdp"``."""
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh: expected a '{DATA_AXIS}' axis, got axes {mesh.axis_names}")
    return tuple(name for name in BATCH_AXES if name in mesh.axis_names)


def data_sharding(mesh: jax.sharding.Mesh, ndim: int = 1, *, batch_axis: int = 0) -> jax.NamedSharding:
    """Sharding that splits array axis ``batch_axis`` over the mesh's batch axes.

    The batch axes are ``"data"`` and, where the mesh has one, ``"fsdp"``: under
    FSDP every device still computes on its own examples.

    Args:
        mesh: the device mesh; must have a ``"data"`` axis.
        ndim: rank of the arrays it will place (a shorter spec also applies to
            higher-rank arrays, so 1 + ``batch_axis`` fits any batch leaf).
        batch_axis: which array axis is the batch axis B (1 for fused
            ``[k, B, ...]`` batches).

    Returns:
        ``NamedSharding(mesh, P(None, ..., ("data", "fsdp"), None, ...))`` of length ``ndim``.

    Raises:
        ValueError: if the mesh has no ``"data"`` axis or ``batch_axis >= ndim``.

    Example:
        >>> data_sharding(make_mesh(1), 2).spec
        P(('data', 'fsdp'), None)
    """
    axes = _batch_axes(mesh)
    if not 0 <= batch_axis < ndim:
        raise ValueError(f"batch_axis: expected an int in [0, {ndim}) for ndim={ndim}, got {batch_axis}")
    spec = [None] * ndim
    spec[batch_axis] = axes if len(axes) > 1 else axes[0]
    return jax.NamedSharding(mesh, jax.P(*spec))


def param_sharding(
    tree: Any, mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh, *, min_size: int = FSDP_MIN_SIZE
) -> Any:
    """The FSDP rule: a ``NamedSharding`` for every leaf of ``tree``, from its shape alone.

    With ``n`` the size of the mesh's ``"fsdp"`` axis (1 if it has none), a leaf
    of shape ``S`` is

    - split over ``"fsdp"`` along its largest axis whose length is divisible by
      ``n`` (the last such axis on ties), if ``n > 1`` and ``prod(S) >= min_size``;
    - replicated otherwise (``n = 1``, scalars, small leaves such as biases, norm
      scales, the step counter and the key, or no divisible axis).

    Because the rule reads only shapes, Adam's moments and the EMA get the same
    sharding as their parameters, and it applies to concrete arrays, tracers and
    ``jax.ShapeDtypeStruct`` leaves alike (``create_train_state`` and
    ``make_train_step`` apply it to the whole ``TrainState``).

    Args:
        tree: pytree whose leaves have a ``.shape`` (e.g. a ``TrainState``).
        mesh: the device mesh.
        min_size: leaves with fewer elements stay replicated (gathering them would
            cost more latency than the memory it saves); >= 1.

    Returns:
        A pytree like ``tree`` with a ``jax.NamedSharding`` at every leaf.

    Raises:
        ValueError: if ``min_size < 1``.

    Example:
        >>> mesh = jax.sharding.AbstractMesh((2, 4), ("data", "fsdp"))
        >>> leaves = {"w": jax.ShapeDtypeStruct((3, 3, 64, 32), np.float32), "b": jax.ShapeDtypeStruct((32,), np.float32)}
        >>> rule = param_sharding(leaves, mesh)
        >>> rule["w"].spec, rule["b"].spec
        (P(None, None, 'fsdp'), P())
    """
    if min_size < 1:
        raise ValueError(f"min_size: expected an int >= 1, got {min_size}")
    n = dict(mesh.shape).get(FSDP_AXIS, 1)

    def leaf_sharding(leaf) -> jax.NamedSharding:
        shape = tuple(leaf.shape)
        divisible = [axis for axis, length in enumerate(shape) if length % n == 0]
        if n == 1 or not divisible or int(np.prod(shape)) < min_size:
            return jax.NamedSharding(mesh, jax.P())
        axis = max(divisible, key=lambda a: (shape[a], a))
        # No trailing Nones: the spec XLA gives the step's outputs, so inputs and outputs match.
        return jax.NamedSharding(mesh, jax.P(*[None] * axis, FSDP_AXIS))

    return jax.tree.map(leaf_sharding, tree)


def replicated(mesh: jax.sharding.Mesh) -> jax.NamedSharding:
    """Sharding that keeps a full copy of an array on every device of ``mesh``."""
    return jax.NamedSharding(mesh, jax.P())


def shard_batch(
    batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh, *, batch_axis: int = 0
) -> dict[str, jax.Array]:
    """Places this process's host batch on the mesh, split over ``("data", "fsdp")``.

    Each process passes its local part (``B_local = B / jax.process_count()``, as
    ``make_loader`` with a per-process batch size yields); the global batch is the
    concatenation over processes along ``batch_axis``, in the order of their devices
    on the mesh (``jax.make_array_from_process_local_data``), so this is correct on
    one host and on a pod alike.

    Args:
        batch: dict of host arrays ``[B_local, ...]`` (or ``[k, B_local, ...]`` with
            ``batch_axis=1`` for fused steps).
        mesh: the device mesh with a ``"data"`` axis (and usually ``"fsdp"``).
        batch_axis: the array axis holding the batch.

    Returns:
        dict of global ``jax.Array`` with the same keys, sharded on ``batch_axis``.

    Raises:
        ValueError: if an array has too few axes, the leaves disagree on the
            batch size, or the global batch is not divisible by the number of
            devices on the batch axes (``"data"`` x ``"fsdp"``).

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
    axes = _batch_axes(mesh)
    num_shards = int(np.prod([mesh.shape[name] for name in axes]))
    global_batch = next(iter(sizes.values()), 0) * jax.process_count()
    if global_batch % num_shards:
        raise ValueError(
            f"batch: global batch size {global_batch} is not divisible by the {num_shards} devices of the "
            f"mesh axes {axes}; choose a batch size that is a multiple of it"
        )
    return {
        name: jax.make_array_from_process_local_data(
            data_sharding(mesh, np.ndim(array), batch_axis=batch_axis), np.asarray(array)
        )
        for name, array in batch.items()
    }
