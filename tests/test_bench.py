"""`gensynth bench`: suite definitions, the runner's bookkeeping (plans, alternation, rows,
ratios) and a dry run of the whole record on a stand-in workload. No torch, no U-Net compile."""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from gensynth import bench, cli, models, train


@pytest.fixture(scope="module")
def suite():
    """``benchmarks/suite.py`` as `gensynth bench` loads it; the process settings its import
    changes (XLA flags, compilation cache) are put back afterwards."""
    env = {k: os.environ.get(k) for k in ("XLA_FLAGS", "JAX_ENABLE_COMPILATION_CACHE")}
    cache_dir = jax.config.jax_compilation_cache_dir
    yield bench.load_suite()
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    jax.config.update("jax_compilation_cache_dir", cache_dir)


def _args(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_suite_is_valid_and_known_to_the_cli(suite):
    suites = suite.suites
    assert set(suites.SUITES) == set(bench.SUITE_NAMES)
    for name in bench.SUITE_NAMES:
        assert suites.get_suite(name).name == name
    with pytest.raises(ValueError, match="--suite 'nope': expected one of"):
        suites.get_suite("nope")
    quick = suites.SUITES["quick"]
    assert [(w.size, w.spatial_dims) for w in quick.train] == [(64, 2)]
    assert quick.ddim[0].num_steps == (50, 100)


def test_validate_names_the_bad_workload(suite):
    suites = suite.suites
    quick = suites.SUITES["quick"]
    bad_size = suites.dataclasses.replace(quick, train=(suites.Train(60, 2, 8),))
    with pytest.raises(
        ValueError, match="train 60x60 B=8: size must be divisible by 8"
    ):
        suites.validate(bad_size)
    bad_steps = suites.dataclasses.replace(
        quick, ddim=(suites.DDIM(64, 8, (50,), measured_steps=60),)
    )
    with pytest.raises(ValueError, match="ddim 64x64 B=8: measured_steps"):
        suites.validate(bad_steps)


def test_reference_net_is_monai_and_diffusers_network(suite):
    """Both peers' constructor arguments give gensynth the brief's reference U-Net (they
    differ only in GroupNorm eps), of the size measured against MONAI (18,534,017)."""
    net = suite.suites.REFERENCE_NET
    monai = models.monai_unet_kwargs(net.monai_config(2))
    diffusers = models.diffusers_unet_kwargs(net.diffusers_config(64))
    assert (monai.pop("norm_eps"), diffusers.pop("norm_eps")) == (1e-6, 1e-5)
    assert {"dropout": 0.0, "freq_shift": 0.0} | monai == diffusers  # UNet's defaults
    reference = {
        "channels": 64,
        "channel_mult": (1, 2, 2, 4),
        "num_res_blocks": 2,
        "attention_levels": (2, 3),
        "head_dim": 32,
        "groups": 32,
    }
    assert {k: monai[k] for k in reference} == reference
    shapes = nnx.eval_shape(lambda: models.UNet(**monai, rngs=nnx.Rngs(0)))
    assert models.count_params(shapes) == 18_534_017


def test_plans_measure_k_steps_once_or_every_n(suite):
    s = suite.suites
    assert suite.plans("train", s.Train(64, 2, 8)) == [(None, (None,))]
    assert suite.plans("ddim", s.DDIM(64, 8, (50, 100), 4)) == [(4, (50, 100))]
    assert suite.plans("ddim", s.DDIM(64, 8, (50, 100), None)) == [
        (50, (50,)),
        (100, (100,)),
    ]
    assert suite.plans("pc", s.PC(64, 8, 1000, 1, 2)) == [(2, (1000,))]


def _contender(suite, impl, seconds, steps, flops=None, log=None):
    """A stand-in implementation whose runs take ``seconds`` in turn (and log ``impl``)."""
    times = iter(seconds)
    facts = {
        "params": 10,
        "steps": steps,
        "nfe_per_step": 1,
        "flops_per_step": flops,
        "flops_source": "test",
        "compile_seconds": None,
        "first_run_seconds": 0.0,
        "xla_memory_bytes": None,
    }

    def run():
        if log is not None:
            log.append(impl)
        return {
            "seconds": next(times),
            "rss_peak_delta_bytes": 0,
            "device_peak_bytes": None,
        }

    return suite.Contender(impl, run, facts)


def test_alternate_rotates_who_runs_first(suite):
    order = []
    contenders = [_contender(suite, name, [1.0] * 3, 1, log=order) for name in "abc"]
    suite.alternate(contenders, 3)
    assert "".join(order) == "abcbcacab"
    assert [len(c.runs) for c in contenders] == [3, 3, 3]


def test_rows_scale_k_steps_to_n_and_ratios_divide_times(suite):
    w = suite.suites.DDIM(64, 8, (50, 100), measured_steps=4)
    ours = _contender(suite, "gensynth", [0.4, 0.8, 0.6], 4, flops=2e9)  # 0.15 s/step
    theirs = _contender(suite, "monai", [1.2, 1.2, 1.2], 4)  # 0.3 s/step
    for c in (ours, theirs):
        suite.alternate([c], 3)
    context = {"dtype": "float32", "peaks": {"gensynth": 40e9}, "load": {}}
    rows = suite.result_rows(w, "ddim", [ours, theirs], (50, 100), context)
    g50, g100 = rows[0], rows[1]
    assert g50["ms_per_step"] == pytest.approx(150.0)
    assert g50["seconds_per_batch"] == pytest.approx(7.5)
    assert g100["images_per_second"] == pytest.approx(8 / 15.0)
    assert g50["extrapolated"] and g50["nfe"] == 50
    assert g50["model_flops_per_second"] == pytest.approx(2e9 / 0.15)
    assert g50["mfu"] == pytest.approx(2e9 / 0.15 / 40e9)
    assert rows[2]["mfu"] is None  # no FLOPs counted, no peak known
    ratios = suite.ratios(rows, None)
    assert [(r["steps"], r["peer"]) for r in ratios] == [
        ("50 (50 NFE)", "monai"),
        ("100 (100 NFE)", "monai"),
    ]
    assert all(r["ratio"] == pytest.approx(0.5) for r in ratios)


def test_dry_run_writes_every_field(suite, tmp_path, monkeypatch):
    """The whole suite record and report, with the train step replaced by an 8x8 matmul
    (XLA counts 2 * 8**3 FLOPs) and no peers."""

    def matmul_program(net, w, dtype, seed):
        a = jnp.ones((8, 8))
        compiled, stats = train.compile_aot(jax.jit(lambda a: a @ a), a)
        return suite.gside.Program(
            lambda: compiled(a).block_until_ready(), 1, 1, stats, stats.flops, 64
        )

    monkeypatch.setattr(suite.gside, "compile_train", matmul_program)
    args = _args("--suite", "smoke", "--only", "train", "--no-peers")
    args.out = str(tmp_path)
    json_path, md_path = suite.run(args)
    assert json_path == tmp_path / "suite-smoke-cpu.json"
    record = json.loads(json_path.read_text())
    for key in ("machine", "load_average", "versions", "git", "config", "ratios"):
        assert key in record
    assert record["device"] == {
        "kind": "cpu",
        "platform": "cpu",
        "count": jax.device_count(),
        "used": 1,
    }
    assert {"jax", "flax"} <= set(record["versions"]["gensynth"])
    assert record["peers"]["torch"] == {"skipped": "--no-peers"}
    assert record["config"]["dtype"] == "float32" and record["inverse"] is None
    (row,) = record["results"]
    assert row["impl"] == "gensynth" and row["batch"] == 2
    assert row["flops_per_step"] == 2 * 8**3
    assert row["model_flops_per_second"] == pytest.approx(
        2 * 8**3 / row["measured"]["seconds"]["median"]
    )
    assert row["compile_seconds"] > 0 and row["mfu"] is None  # no CPU peak listed
    assert row["ms_per_step"] > 0 and row["images_per_second"] > 0
    assert row["xla_memory_bytes"]["argument"] == 8 * 8 * 4
    assert "## Workloads" in md_path.read_text()


def test_peers_missing_is_a_clear_skip(suite, monkeypatch):
    monkeypatch.delenv("GENSYNTH_PEER_PYTHON", raising=False)
    monkeypatch.setattr(suite.common.importlib.util, "find_spec", lambda name: None)
    peers = suite.TorchPeers(_args())
    assert peers.proc is None
    assert "--peer-python nor $GENSYNTH_PEER_PYTHON" in peers.info["skipped"]


def test_cli_outside_a_checkout_is_an_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "__file__", str(tmp_path / "gensynth" / "bench.py"))
    assert cli.main(["bench", "--no-peers"]) == 2
    assert "source checkout" in capsys.readouterr().err
