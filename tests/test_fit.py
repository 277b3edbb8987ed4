"""A job that cannot fit its cluster fails at start (sslsep.fit): the resource arithmetic of
every stage, the error's wording, the per-node and max_resources rules, the presets, and one
end-to-end run of experiments/pretrain.py that must exit 2 instead of waiting forever."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sslsep import fit
from sslsep.config import ConfigError, load_config
from sslsep.fit import ClusterFitError
from sslsep.run import main_guard
from sslsep.tuning.space import load_sweep
from sslsep.tuning.sweep import concurrency, trial_cpus

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "experiments" / "configs"
LAPTOP = {"CPU": 2.0}


def cfg_of(*sets, path=None):
    return load_config(path, list(sets))


def error(cfg, stages, total, nodes=None) -> str:
    with pytest.raises(ClusterFitError) as e:
        fit.check(cfg, stages, total, nodes)
    return str(e.value)


def test_readme_example_with_the_old_actor_default_fails_naming_the_keys():
    """`python experiments/pretrain.py --registry ...` on 2 CPUs with augment.cpus_per_actor=1
    (the old default): 1 + 1 + 0.5 = 2.5 CPUs; Ray used to wait forever."""
    msg = error(cfg_of("augment.cpus_per_actor=1"), ["pretrain"], LAPTOP, [LAPTOP])
    assert msg == (
        "pretrain needs 2.5 CPUs at once: pretrain.num_workers × pretrain.cpus_per_worker = 1 × 1 CPU + "
        "augment.min_actors × augment.cpus_per_actor = 1 × 1 CPU + data.cpus_per_task 0.5 CPU = 2.5 CPUs, "
        "but the cluster has 2 CPUs, 0 GPUs: lower augment.cpus_per_actor or pretrain.cpus_per_worker, "
        "or add CPUs")
    assert isinstance(ClusterFitError(msg), ValueError)  # main_guard: one line, exit 2


def test_defaults_fit_a_two_core_laptop():
    cfg = load_config()
    assert cfg.augment.cpus_per_actor == 0.5
    assert fit.need(cfg, ["pretrain"]) == {"CPU": 2.0, "GPU": 0.0}  # 1 trainer + 0.5 actor + 0.5 decode
    assert fit.need(cfg, ["separation"]) == {"CPU": 1.5, "GPU": 0.0}
    for stage in fit.STAGES:
        fit.check(cfg, [stage], LAPTOP, [LAPTOP])


def test_stage_arithmetic():
    cfg = cfg_of("data.cpus_per_task=0.25", "separation.num_workers=2", "separation.cpus_per_worker=1.5",
                 "separation.use_gpu=true", "augment.min_actors=3", "augment.max_actors=6",
                 "augment.cpus_per_actor=2", "augment.gpus_per_actor=0.5", "pretrain.num_workers=4",
                 "pretrain.cpus_per_worker=4", "pretrain.use_gpu=true", "evaluation.use_ray=true",
                 "evaluation.min_actors=2", "evaluation.max_actors=4", "evaluation.cpus_per_actor=1",
                 "evaluation.gpus_per_actor=0.25")
    assert fit.need(cfg, ["data"]) == {"CPU": 0.25, "GPU": 0.0}
    assert fit.need(cfg, ["separation"]) == {"CPU": 2 * 1.5 + 0.25, "GPU": 2.0}
    assert fit.need(cfg, ["augment"]) == {"CPU": 3 * 2 + 0.25, "GPU": 1.5}  # min_actors, not max
    assert fit.need(cfg, ["pretrain"]) == {"CPU": 16 + 6 + 0.25, "GPU": 4 + 1.5}  # all at once
    assert fit.need(cfg, ["evaluate"]) == {"CPU": 2 + 0.25, "GPU": 0.5}
    # the joint job runs its stages one after another: the largest of each resource
    assert fit.need(cfg, ["joint"]) == {"CPU": 22.25, "GPU": 5.5}
    assert [p.stage for p in fit.phases(cfg, "joint")] == ["data", "separation", "pretrain", "evaluate"]
    assert fit.need(cfg, ["trial"]) == fit.need(cfg, ["pretrain"])
    assert trial_cpus(cfg) == 22.25


def test_precomputed_views_come_before_the_trainers():
    cfg = cfg_of("pretrain.views_source=precomputed", "pretrain.num_workers=2", "augment.min_actors=3",
                 "augment.max_actors=3")
    plan = fit.phases(cfg, ["pretrain"])
    assert [p.need("CPU") for p in plan] == [3 * 0.5 + 0.5, 2 * 1.0]
    assert fit.need(cfg, ["pretrain"])["CPU"] == 2.0  # max of the two, not their sum
    fit.check(cfg, ["pretrain"], LAPTOP)
    msg = error(cfg, ["pretrain"], {"CPU": 1.5})
    assert msg.startswith("pretrain (computing the precomputed views) needs 2 CPUs at once: "
                          "augment.min_actors × augment.cpus_per_actor = 3 × 0.5 CPU")
    assert "pretrain (training on the precomputed views) needs 2 CPUs" in msg
    assert "lower augment.cpus_per_actor or augment.min_actors" in msg


def test_stages_that_use_no_ray_hold_nothing():
    cfg = cfg_of("separation.use_ray=false", "pretrain.use_ray=false", "evaluation.use_ray=false")
    for stage in ("separation", "pretrain", "evaluate", "trial"):
        assert fit.phases(cfg, [stage]) == []
        fit.check(cfg, [stage], {"CPU": 0})
    reuse = cfg_of("separation.registry=s3://bucket/run/registry.json", "separation.num_workers=64")
    assert fit.phases(reuse, ["separation"]) == []  # a given registry: no separator is trained
    assert "separation" not in [p.stage for p in fit.phases(reuse, ["joint"])]
    assert "evaluate" not in [p.stage for p in fit.phases(cfg_of("evaluation.use_ray=true", "joint.evaluate=false"),
                                                          ["joint"])]
    with pytest.raises(ValueError, match="unknown stage 'pretrian'"):
        fit.phases(cfg, ["pretrian"])


def test_every_joint_variant_holds_what_the_configured_model_does():
    """The controls change views and objectives, never resource keys, and the mixture-only one
    still runs the augmentation actor pool: the configured model's check covers them all."""
    from sslsep.contrastive.controls import CONTROL_OVERRIDES, control_config

    cfg = cfg_of("augment.cpus_per_actor=1", "augment.min_actors=2", "augment.max_actors=2")
    for name in CONTROL_OVERRIDES:
        assert fit.need(control_config(cfg, name), ["pretrain"]) == fit.need(cfg, ["pretrain"]), name
    assert fit.need(control_config(cfg, "mixture-only"), ["pretrain"])["CPU"] == 1 + 2 * 1 + 0.5


def test_gpus_on_a_cpu_only_cluster_name_the_gpu_keys():
    cfg = cfg_of("pretrain.use_gpu=true", "augment.gpus_per_actor=0.5")
    msg = error(cfg, ["pretrain"], {"CPU": 8}, [{"CPU": 8}])
    assert ("pretrain needs 1.5 GPUs at once: pretrain.num_workers × pretrain.use_gpu = 1 × 1 GPU + "
            "augment.min_actors × augment.gpus_per_actor = 1 × 0.5 GPU = 1.5 GPUs, but the cluster has "
            "8 CPUs, 0 GPUs: lower augment.gpus_per_actor, set pretrain.use_gpu=false, or add GPUs") in msg
    # and per node: no node has a GPU for one worker (the same error, one line)
    assert "one pretrain worker needs 1 CPU and 1 GPU on one node" in msg and "\n" not in msg
    sep = error(cfg_of("separation.use_gpu=true", "separation.num_workers=2"), ["separation"], {"CPU": 8, "GPU": 1})
    assert "separation.num_workers × separation.use_gpu = 2 × 1 GPU = 2 GPUs, but the cluster has 8 CPUs, 1 GPU" in sep
    assert "lower separation.num_workers, set separation.use_gpu=false, or add GPUs" in sep


def test_a_bundle_must_fit_on_one_node():
    """Two 1-CPU nodes add up to 2 CPUs, but a 1.5-CPU worker fits on neither."""
    cfg = cfg_of("separation.cpus_per_worker=1.5")
    nodes = [{"CPU": 1.0}, {"CPU": 1.0}]
    fit.check(cfg, ["separation"], {"CPU": 2.0})  # the total alone fits: 1.5 + 0.5
    msg = error(cfg, ["separation"], {"CPU": 2.0}, nodes)
    assert msg == ("separation: one separation worker needs 1.5 CPUs on one node (separation.cpus_per_worker), "
                   "but no alive node has that (nodes: 2 × (1 CPU, 0 GPUs)): lower separation.cpus_per_worker, "
                   "or add a node that large")
    fit.check(cfg, ["separation"], {"CPU": 2.5}, nodes + [{"CPU": 0.5}, {"CPU": 2.0, "GPU": 1.0}])
    gpu_actor = cfg_of("augment.gpus_per_actor=1")
    fit.check(gpu_actor, ["augment"], {"CPU": 9, "GPU": 1}, [{"CPU": 8}, {"CPU": 1, "GPU": 1}])
    msg = error(gpu_actor, ["augment"], {"CPU": 8.4, "GPU": 1}, [{"CPU": 8}, {"CPU": 0.4, "GPU": 1}])
    assert ("one augment actor needs 0.5 CPU and 1 GPU on one node (augment.cpus_per_actor, "
            "augment.gpus_per_actor)") in msg


def test_small_sums_fit_exactly():
    cfg = cfg_of("pretrain.cpus_per_worker=0.1", "augment.cpus_per_actor=0.2", "data.cpus_per_task=0.3")
    assert 0.1 + 0.2 + 0.3 > 0.6  # floating point
    fit.check(cfg, ["pretrain"], {"CPU": 0.6}, [{"CPU": 0.6}])


def test_max_resources_stands_for_an_autoscaling_cluster():
    cfg = load_config(PRESETS / "audioset_gpu.yaml")
    head_only = {"CPU": 0.0}  # what `ray up cluster/gpu.yaml` starts with
    assert cfg.ray.max_resources == {"CPU": 192, "GPU": 16}
    plan = fit.check(cfg, ["joint"], head_only, [head_only])  # totals vs max_resources; no node check
    assert fit.summary(plan, head_only, fit.max_resources(cfg)) == \
        "fits: the largest stage, pretrain, holds 24.5 of 192 CPUs, 6 of 16 GPUs (ray.max_resources)"
    # without it, the head alone refuses every job
    now = cfg_of("ray.max_resources={}", path=PRESETS / "audioset_gpu.yaml")
    assert "but the cluster has 0 CPUs, 0 GPUs" in error(now, ["joint"], head_only, [head_only])
    small = cfg_of("ray.max_resources={CPU: 48, GPU: 4}", path=PRESETS / "audioset_gpu.yaml")
    msg = error(small, ["pretrain"], head_only)
    assert "pretrain needs 6 GPUs at once" in msg
    assert "but ray.max_resources lets the cluster grow to 48 CPUs, 4 GPUs" in msg
    assert "or raise ray.max_resources.GPU" in msg
    with pytest.raises(ConfigError, match="ray.max_resources"):
        fit.check(cfg_of("ray.max_resources={CPU: lots}"), ["pretrain"], LAPTOP)


def test_max_resources_matches_cluster_gpu_yaml():
    """audioset_gpu.yaml's max_resources is what cluster/gpu.yaml's worker types can grow to."""
    cluster = yaml.safe_load((ROOT / "cluster" / "gpu.yaml").read_text())
    grow = {"CPU": 0, "GPU": 0}
    for name, node in cluster["available_node_types"].items():
        count = 1 if name == cluster["head_node_type"] else node["max_workers"]
        for r in grow:
            grow[r] += node["resources"].get(r, 0) * count
    assert load_config(PRESETS / "audioset_gpu.yaml").ray.max_resources == grow


@pytest.mark.parametrize("preset", ["quick", "debug"])
def test_laptop_presets_fit_two_cores(preset):
    cfg = load_config(PRESETS / f"{preset}.yaml")
    assert not cfg.ray.max_resources
    fit.check(cfg, ["joint"], LAPTOP, [LAPTOP])
    fit.check(cfg, ["augment", "evaluate", "trial"], LAPTOP, [LAPTOP])


def test_sweep_trials_use_the_same_definition(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nmetric: mAP\nmode: max\nnum_samples: 2\nrungs: [2]\n"
                     "space:\n  pretrain.lr: {loguniform: [1.0e-4, 1.0e-3]}\n")
    spec = load_sweep(sweep)
    cfg = load_config()
    assert trial_cpus(cfg) == fit.need(cfg, ["trial"])["CPU"] == 2.0
    assert concurrency(cfg, spec, {"CPU": 7}) == 3
    with pytest.raises(ClusterFitError, match="one trial needs 2.5 CPUs at once: .* augment.cpus_per_actor"):
        concurrency(cfg_of("augment.cpus_per_actor=1"), spec, LAPTOP)
    # on an autoscaling cluster the trials that fit are counted against what it can grow to
    grow = cfg_of("ray.max_resources={CPU: 20, GPU: 2}", "pretrain.use_gpu=true")
    assert concurrency(grow, spec, {"CPU": 0}) == 2


def test_main_guard_prints_one_line_and_exits_2(capsys):
    def job():
        fit.check(cfg_of("augment.cpus_per_actor=1"), ["pretrain"], LAPTOP)

    assert main_guard(job) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: pretrain needs 2.5 CPUs") and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.ray
def test_pretrain_script_that_cannot_fit_exits_2_at_start(registry, tmp_path):
    """The real script on a local 2-CPU Ray: it must stop with the keys named, not wait forever."""
    res = subprocess.run([sys.executable, "experiments/pretrain.py", "--registry", registry,
                          "--set", "augment.cpus_per_actor=1", "--set", "ray.num_cpus=2",
                          "--out", str(tmp_path / "run")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith("error: pretrain needs 2.5 CPUs at once"), res.stderr
    for key in ("augment.cpus_per_actor", "pretrain.cpus_per_worker", "data.cpus_per_task"):
        assert key in err
    assert "the cluster has 2 CPUs, 0 GPUs" in err
    assert not (tmp_path / "run" / "encoder.pt").exists()


def test_custom_resources_pin_actors_and_workers_to_the_nodes_that_offer_them():
    """`augment.resources` / `pretrain.resources` (as `ray start --resources` offers them): a
    cluster where no node has the resource fails at start naming it; one that has it fits."""
    cfg = cfg_of("augment.resources={separator_node: 1}", "pretrain.resources={trainer_node: 1}")
    total = {"CPU": 4.0, "separator_node": 1.0, "trainer_node": 1.0}
    fit.check(cfg, ["pretrain"], total, [{"CPU": 2.0, "separator_node": 1.0}, {"CPU": 2.0, "trainer_node": 1.0}])
    msg = error(cfg, ["pretrain"], {"CPU": 4.0, "separator_node": 1.0}, [{"CPU": 4.0, "separator_node": 1.0}])
    assert "pretrain.num_workers × pretrain.resources.trainer_node = 1 × 1 trainer_node" in msg
    assert "one pretrain worker needs 1 CPU and 1 trainer_node on one node" in msg
    with pytest.raises(ConfigError, match="augment.resources.separator_node' expects a number"):
        cfg_of("augment.resources={separator_node: lots}")
