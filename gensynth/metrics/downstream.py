"""Downstream utility of synthetic data: train a small segmenter or classifier, test on real data.

The book judges synthetic images by what they are good for (chapters 1, 4, 5 and 10): the same
small network is trained on (a) the real training set, (b) the synthetic set, (c) real plus
synthetic, and each is scored on one held-out real test set, as mean ± sd over seeds.

Everything of one study compiles once: the real and synthetic sets are stacked into one pool on
the device, a setting is a table of pool indices, and batches are drawn on the device by index.
One jitted call runs a chunk of optimiser steps (Adam) in a loop; the progress bar advances per
chunk. No augmentation is applied; pass augmented arrays if an experiment needs them.

Losses: soft Dice (over the batch, foreground classes, nnU-Net's ``do_bg=False``) plus cross
entropy for segmentation, cross entropy for classification.

References:
  Isensee et al. 2021, "nnU-Net" (the segmenter's shape and loss); Fernandez et al. ch. 1,
  Pinaya et al. ch. 4, Chen et al. ch. 5 and Xue/Ye et al. ch. 10 of the book (the study design).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from gensynth.metrics.classification import accuracy, roc_auc
from gensynth.metrics.segmentation import dice
from gensynth.nn import Downsample, GroupNorm, Upsample, conv

SETTINGS = ("real", "synthetic", "mixed")
TASKS = ("segmentation", "classification")
_CHUNK = 100  # optimiser steps per compiled call (and per progress-bar update)


class _ConvBlock(nnx.Module):
    """Two (3x3(x3) conv, instance norm, LeakyReLU 0.01) layers: ``[B, *S, C_in] -> [B, *S, C_out]``."""

    def __init__(self, in_channels: int, out_channels: int, *, spatial_dims: int, rngs: nnx.Rngs):
        self.conv1 = conv(in_channels, out_channels, spatial_dims=spatial_dims, rngs=rngs)
        self.norm1 = GroupNorm(out_channels, groups=out_channels, rngs=rngs)
        self.conv2 = conv(out_channels, out_channels, spatial_dims=spatial_dims, rngs=rngs)
        self.norm2 = GroupNorm(out_channels, groups=out_channels, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.leaky_relu(self.norm1(self.conv1(x)), 0.01)
        return jax.nn.leaky_relu(self.norm2(self.conv2(x)), 0.01)


class _Encoder(nnx.Module):
    """Conv blocks of width ``channels * 2**level``, a stride-2 conv between levels; returns every level."""

    def __init__(self, in_channels: int, *, spatial_dims: int, channels: int, levels: int, rngs: nnx.Rngs):
        widths = [channels * 2**level for level in range(levels)]
        inputs = [in_channels] + widths[:-1]
        self.blocks = nnx.List([_ConvBlock(i, o, spatial_dims=spatial_dims, rngs=rngs) for i, o in zip(inputs, widths)])
        self.down = nnx.List([Downsample(c, spatial_dims=spatial_dims, rngs=rngs) for c in widths[:-1]])
        self.widths = widths

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        features = []
        for level, block in enumerate(self.blocks):
            x = block(x if level == 0 else self.down[level - 1](features[-1]))
            features.append(x)  # [B, *S / 2**level, channels * 2**level]
        return features


class SmallSegmenter(nnx.Module):
    """Compact 2D/3D U-Net (nnU-Net-like: instance norm, LeakyReLU, stride-2 conv down-sampling).

    Args:
      in_channels: image channels C.
      num_classes: output classes K (2 for a binary mask).
      spatial_dims: 2 for ``[B, H, W, C]`` images, 3 for ``[B, D, H, W, C]`` volumes.
      channels: width of the first level; level l has ``channels * 2**l``.
      levels: resolution levels (spatial sizes must be divisible by ``2**(levels - 1)``).
      rngs: ``params`` stream for initialisation.

    >>> net = SmallSegmenter(1, 3, channels=4, levels=2, rngs=nnx.Rngs(0))
    >>> net(jnp.zeros((2, 8, 8, 1))).shape
    (2, 8, 8, 3)
    """

    def __init__(
        self, in_channels: int, num_classes: int, *, spatial_dims: int = 2, channels: int = 16, levels: int = 3,
        rngs: nnx.Rngs,
    ):  # fmt: skip
        self.encoder = _Encoder(in_channels, spatial_dims=spatial_dims, channels=channels, levels=levels, rngs=rngs)
        widths = self.encoder.widths
        self.up = nnx.List([Upsample(c, spatial_dims=spatial_dims, rngs=rngs) for c in widths[:0:-1]])
        self.decode = nnx.List(
            [_ConvBlock(widths[l] + widths[l - 1], widths[l - 1], spatial_dims=spatial_dims, rngs=rngs)
             for l in range(levels - 1, 0, -1)]
        )  # fmt: skip
        self.head = conv(channels, num_classes, spatial_dims=spatial_dims, kernel_size=1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, *S, C]`` image -> ``[B, *S, K]`` class logits."""
        features = self.encoder(x)
        h = features.pop()
        for up, block in zip(self.up, self.decode):
            h = block(jnp.concatenate([up(h), features.pop()], axis=-1))
        return self.head(h)


class SmallClassifier(nnx.Module):
    """The `SmallSegmenter` encoder, global average pooling and a linear layer.

    Its instance norms normalise every image, so a class that differs only in global brightness
    or contrast is invisible to it (as to the segmenter); spatial patterns are what it sees.

    Args:
      in_channels: image channels C.
      num_classes: output classes K.
      spatial_dims: 2 for ``[B, H, W, C]`` images, 3 for ``[B, D, H, W, C]`` volumes.
      channels: width of the first level; level l has ``channels * 2**l``.
      levels: resolution levels.
      rngs: ``params`` stream for initialisation.

    >>> SmallClassifier(1, 2, channels=4, levels=2, rngs=nnx.Rngs(0))(jnp.zeros((3, 8, 8, 1))).shape
    (3, 2)
    """

    def __init__(
        self, in_channels: int, num_classes: int, *, spatial_dims: int = 2, channels: int = 16, levels: int = 3,
        rngs: nnx.Rngs,
    ):  # fmt: skip
        self.encoder = _Encoder(in_channels, spatial_dims=spatial_dims, channels=channels, levels=levels, rngs=rngs)
        self.head = nnx.Linear(self.encoder.widths[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, *S, C]`` image -> ``[B, K]`` class logits."""
        h = self.encoder(x)[-1]
        return self.head(jnp.mean(h, axis=tuple(range(1, h.ndim - 1))))


def _segmentation_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross entropy + (1 - soft Dice) on `logits` [B, *S, K], integer `labels` [B, *S]."""
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    probs = jax.nn.softmax(logits)[..., 1:]  # [B, *S, K-1] foreground
    onehot = jax.nn.one_hot(labels, logits.shape[-1])[..., 1:]
    axes = tuple(range(probs.ndim - 1))  # batch and space: nnU-Net's batch Dice
    inter = jnp.sum(probs * onehot, axis=axes)
    soft_dice = (2 * inter + 1e-5) / (jnp.sum(probs, axis=axes) + jnp.sum(onehot, axis=axes) + 1e-5)
    return ce + 1.0 - jnp.mean(soft_dice)


def _classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def _make_train_fn(graphdef: nnx.GraphDef, loss_fn, optimizer: optax.GradientTransformation, batch_size: int):
    """Jitted ``train_fn(params, opt_state, key, pool_x, pool_y, table, n, start, num)``: steps ``[start, start+num)``.

    Step i draws ``batch_size`` pool rows ``table[randint(fold_in(key, i), 0, n)]`` and takes one
    optimiser step; returns the new params and optimiser state and the mean loss of the chunk.
    """

    def train_fn(params, opt_state, key, pool_x, pool_y, table, n, start, num):
        def body(i, carry):
            params, opt_state, total = carry
            pick = table[jax.random.randint(jax.random.fold_in(key, i), (batch_size,), 0, n)]  # [b]

            def loss_of(p):
                return loss_fn(nnx.merge(graphdef, p)(pool_x[pick]), pool_y[pick])

            loss, grads = jax.value_and_grad(loss_of)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, total + loss

        params, opt_state, total = jax.lax.fori_loop(start, start + num, body, (params, opt_state, jnp.float32(0.0)))
        return params, opt_state, total / num

    return jax.jit(train_fn, donate_argnums=(0, 1))


def _make_predict_fn(graphdef: nnx.GraphDef, batch_size: int):
    """Jitted ``predict_fn(params, x)``: class probabilities for ``x`` [M * batch_size, ...], batch by batch."""

    def predict_fn(params, x):
        model = nnx.merge(graphdef, params)
        batches = x.reshape((-1, batch_size) + x.shape[1:])  # [M, b, *S, C]
        probs = jax.lax.map(lambda b: jax.nn.softmax(model(b)), batches)  # [M, b, ..., K]
        return probs.reshape((-1,) + probs.shape[2:])

    return jax.jit(predict_fn)


@functools.lru_cache(maxsize=8)
def _make_programs(task, in_channels, num_classes, spatial_dims, channels, levels, learning_rate, batch_size):
    """Jitted programs of one network configuration, cached so that repeated studies compile once.

    Returns ``(init_fn, optimizer, train_fn, predict_fn)`` with ``init_fn(key) -> params``; a sweep
    over ``mix_ratio`` or over synthetic sets of one size reuses them.
    """
    network = SmallSegmenter if task == "segmentation" else SmallClassifier
    loss_fn = _segmentation_loss if task == "segmentation" else _classification_loss

    def make_model(init_key):
        return network(in_channels, num_classes, spatial_dims=spatial_dims, channels=channels, levels=levels,
                       rngs=nnx.Rngs(init_key))  # fmt: skip

    graphdef = nnx.graphdef(nnx.eval_shape(lambda: make_model(jax.random.key(0))))
    optimizer = optax.adam(learning_rate)
    init_fn = jax.jit(lambda init_key: nnx.state(make_model(init_key)))
    train_fn = _make_train_fn(graphdef, loss_fn, optimizer, batch_size)
    return init_fn, optimizer, train_fn, _make_predict_fn(graphdef, batch_size)


def _check_set(name: str, pair, task: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise ValueError(f"{name}: expected a pair (x, y) of arrays, got {type(pair).__name__}")
    x, y = np.asarray(pair[0], np.float32), np.asarray(pair[1])
    label_shape = x.shape[:-1] if task == "segmentation" else x.shape[:1]
    layout = "[N, *S]" if task == "segmentation" else "[N]"
    if x.ndim not in (4, 5) or x.shape[0] == 0 or y.shape != label_shape:
        raise ValueError(
            f"{name}: expected x [N, H, W, C] or [N, D, H, W, C] with N >= 1 and {task} labels y {layout}, "
            f"got x {x.shape} and y {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"{name}: expected integer labels in [0, {num_classes}), got {y.dtype} in [{y.min()}, {y.max()}]"
        )
    return x, y.astype(np.int32)


def _summary(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "sd": sd, "per_seed": values}


def _test_metrics(task: str, probs: jax.Array, labels: jax.Array, num_classes: int) -> dict[str, float]:
    if task == "classification":
        return {"accuracy": float(accuracy(probs, labels)), "auc": float(roc_auc(probs, labels))}
    per_class = jnp.mean(dice(jnp.argmax(probs, axis=-1), labels, num_classes=num_classes), axis=0)  # [K]
    metrics = {"dice": float(jnp.mean(per_class[1:]))}
    if num_classes > 2:
        metrics.update({f"dice_{k}": float(per_class[k]) for k in range(1, num_classes)})
    return metrics


def run_utility_study(
    key: jax.Array,
    *,
    real: tuple[jax.Array, jax.Array],
    test: tuple[jax.Array, jax.Array],
    synthetic: tuple[jax.Array, jax.Array] | None = None,
    task: str = "segmentation",
    settings: Sequence[str] = SETTINGS,
    num_classes: int = 2,
    mix_ratio: float = 1.0,
    steps: int = 500,
    seeds: int = 3,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    channels: int = 16,
    levels: int = 3,
    progress: bool = True,
) -> dict:
    """Trains one small network per (setting, seed) and scores it on the real test set.

    Settings: ``"real"`` trains on `real`, ``"synthetic"`` on `synthetic`, ``"mixed"`` on all of
    `real` plus ``round(mix_ratio * N_real)`` synthetic samples (chapter 10's augmentation ratio;
    a fresh random subset per seed). Batches are drawn uniformly, with replacement, from the
    setting's training set. Within one seed every setting starts from the same initial weights and
    draws from the same key stream (a paired comparison).

    Args:
      key: typed PRNG key; seed s uses ``fold_in(key, s)``.
      real: ``(x, y)``: images ``[N, H, W, C]`` or ``[N, D, H, W, C]`` (float, any fixed range)
        and labels: ``[N, H, W]`` / ``[N, D, H, W]`` integer masks for segmentation, ``[N]``
        integers for classification, all in ``[0, num_classes)``.
      test: held-out real ``(x, y)``, same layout.
      synthetic: synthetic ``(x, y)``, same layout; needed by ``"synthetic"`` and ``"mixed"``.
      task: ``"segmentation"`` (`SmallSegmenter`, Dice + CE loss) or ``"classification"``
        (`SmallClassifier`, CE loss).
      settings: which of ``"real"``, ``"synthetic"``, ``"mixed"`` to run, in this order.
      num_classes: K >= 2 (background counts as class 0 in segmentation).
      mix_ratio: synthetic-to-real count ratio of the ``"mixed"`` set, > 0.
      steps: optimiser steps per run.
      seeds: runs per setting.
      batch_size: training (and evaluation) batch size.
      learning_rate: Adam step size.
      channels: width of the network's first level.
      levels: resolution levels (spatial sizes divisible by ``2**(levels - 1)``).
      progress: show a tqdm bar (advanced every 100 steps).

    Returns:
      A JSON-ready dict: ``task``; ``metrics`` (names: ``["dice"]`` plus ``"dice_k"`` per
      foreground class when K > 2 — Dice per test image, mean over foreground classes, a class
      absent from both prediction and truth scoring 1 — or ``["accuracy", "auc"]``); ``config``;
      and ``settings[name]`` = ``{"n_train": int, "train_loss": S, <metric>: S, ...}`` where
      ``S = {"mean", "sd", "per_seed"}`` (sd with ddof 1; 0 for one seed; ``train_loss`` is the
      mean loss of the last 100 steps).

    Raises:
      ValueError: naming the bad argument (shapes, labels, settings, sizes).

    >>> x = jnp.zeros((4, 8, 8, 1)); y = jnp.zeros((4, 8, 8), jnp.int32)
    >>> r = run_utility_study(jax.random.key(0), real=(x, y), test=(x, y), settings=("real",), steps=2,
    ...                       seeds=1, batch_size=2, channels=4, levels=2, progress=False)
    >>> sorted(r["settings"]["real"]), r["settings"]["real"]["n_train"]
    (['dice', 'n_train', 'train_loss'], 4)
    """
    if not (isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(f"key: expected a typed key from jax.random.key(seed), got {key!r}")
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    settings = tuple(settings)
    if not settings or len(set(settings)) != len(settings) or not set(settings) <= set(SETTINGS):
        raise ValueError(f"settings: expected distinct names from {SETTINGS}, got {settings}")
    for name, value in [("num_classes", num_classes - 1), ("steps", steps), ("seeds", seeds),
                        ("batch_size", batch_size), ("channels", channels), ("levels", levels)]:  # fmt: skip
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}: expected an int >= {2 if name == 'num_classes' else 1}, got {value!r}")
    if not (mix_ratio > 0 and learning_rate > 0):
        raise ValueError(f"mix_ratio, learning_rate: expected positive numbers, got {mix_ratio}, {learning_rate}")
    real_x, real_y = _check_set("real", real, task, num_classes)
    test_x, test_y = _check_set("test", test, task, num_classes)
    needs_synthetic = {"synthetic", "mixed"} & set(settings)
    if synthetic is None and needs_synthetic:
        raise ValueError(f"synthetic: needed by the settings {sorted(needs_synthetic)}, got None")
    syn_x, syn_y = (real_x[:0], real_y[:0])  # an empty synthetic set keeps one code path
    if synthetic is not None:
        syn_x, syn_y = _check_set("synthetic", synthetic, task, num_classes)
    sample_shape = real_x.shape[1:]
    if test_x.shape[1:] != sample_shape or (synthetic is not None and syn_x.shape[1:] != sample_shape):
        raise ValueError(
            "real, synthetic, test: expected images of one shape, "
            f"got {sample_shape}, {syn_x.shape[1:]}, {test_x.shape[1:]}"
        )
    if any(n % 2 ** (levels - 1) for n in sample_shape[:-1]):
        raise ValueError(f"levels: spatial sizes {sample_shape[:-1]} must be divisible by 2**(levels - 1)")
    n_real, n_syn = len(real_x), len(syn_x)
    n_mix = round(mix_ratio * n_real)
    if "mixed" in settings and not 1 <= n_mix <= n_syn:
        raise ValueError(f"mix_ratio: {mix_ratio} x {n_real} real asks for {n_mix} synthetic samples; have {n_syn}")

    init_fn, optimizer, train_fn, predict_fn = _make_programs(
        task, sample_shape[-1], num_classes, real_x.ndim - 2, channels, levels, learning_rate, batch_size
    )
    pool_x = jnp.asarray(np.concatenate([real_x, syn_x]))  # [N_real + N_syn, *S, C]
    pool_y = jnp.asarray(np.concatenate([real_y, syn_y]))
    pad = -len(test_x) % batch_size
    test_x = jnp.asarray(np.concatenate([test_x, np.zeros((pad, *sample_shape), np.float32)]))
    test_y = jnp.asarray(test_y)

    def table(setting: str, mix_key: jax.Array) -> tuple[jax.Array, int]:
        """Pool indices of the setting's training set, padded to the pool size, and their count."""
        real_idx, syn_idx = jnp.arange(n_real), n_real + jnp.arange(n_syn)
        mixed_idx = jnp.concatenate([real_idx, n_real + jax.random.permutation(mix_key, n_syn)[:n_mix]])
        rows = {"real": real_idx, "synthetic": syn_idx, "mixed": mixed_idx}[setting]
        return jnp.pad(rows, (0, n_real + n_syn - len(rows))).astype(jnp.int32), len(rows)

    runs = {name: {"metrics": [], "loss": []} for name in settings}
    sizes = {}
    with tqdm(total=len(settings) * seeds * steps, desc=f"utility ({task})", disable=not progress) as bar:
        for seed in range(seeds):
            init_key, mix_key, train_key = jax.random.split(jax.random.fold_in(key, seed), 3)
            for name in settings:
                rows, sizes[name] = table(name, mix_key)
                params = init_fn(init_key)
                opt_state = optimizer.init(params)
                for start in range(0, steps, _CHUNK):
                    num = min(_CHUNK, steps - start)
                    params, opt_state, loss = train_fn(params, opt_state, train_key, pool_x, pool_y, rows,
                                                       sizes[name], start, num)  # fmt: skip
                    bar.update(num)
                    bar.set_postfix(setting=name, seed=seed, loss=f"{float(loss):.4f}")
                probs = predict_fn(params, test_x)[: len(test_y)]
                runs[name]["metrics"].append(_test_metrics(task, probs, test_y, num_classes))
                runs[name]["loss"].append(float(loss))

    metric_names = list(runs[settings[0]]["metrics"][0])
    results = {
        "task": task,
        "metrics": metric_names,
        "config": {"steps": steps, "seeds": seeds, "batch_size": batch_size, "learning_rate": learning_rate,
                   "mix_ratio": mix_ratio, "num_classes": num_classes, "channels": channels, "levels": levels},
        "settings": {},
    }  # fmt: skip
    for name, run in runs.items():
        entry = {"n_train": sizes[name], "train_loss": _summary(run["loss"])}
        entry.update({m: _summary([r[m] for r in run["metrics"]]) for m in metric_names})
        results["settings"][name] = entry
    return results


def format_utility_table(results: dict, *, digits: int = 3) -> str:
    """Markdown table of a `run_utility_study` result: one row per setting, ``mean ± sd`` per metric.

    Args:
      results: the dict returned by `run_utility_study`.
      digits: decimals shown.

    Returns:
      The table as a string (header, separator and one line per setting).

    Raises:
      ValueError: if `results` lacks the ``metrics`` and ``settings`` entries.

    >>> s = {"mean": 0.9, "sd": 0.01, "per_seed": [0.89, 0.91]}
    >>> print(format_utility_table({"metrics": ["dice"], "settings": {"real": {"n_train": 8, "dice": s}}}))
    | setting | n_train | dice |
    |---|---|---|
    | real | 8 | 0.900 ± 0.010 |
    """
    if not isinstance(results, dict) or "metrics" not in results or "settings" not in results:
        raise ValueError("results: expected the dict returned by run_utility_study (with 'metrics' and 'settings')")
    metrics = results["metrics"]
    lines = ["| setting | n_train | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for name, entry in results["settings"].items():
        cells = [f"{entry[m]['mean']:.{digits}f} ± {entry[m]['sd']:.{digits}f}" for m in metrics]
        lines.append(f"| {name} | {entry['n_train']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
