"""cluster/gpu.yaml, checked offline: Ray's shipped JSON schema, Ray's own config validator
(the checks `ray up` runs before it calls AWS), and what sslsep needs from the cluster."""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import ray
import ray.autoscaler
from ray.autoscaler._private.util import prepare_config, validate_config

from sslsep.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster" / "gpu.yaml"
PRESET = ROOT / "experiments" / "configs" / "audioset_gpu.yaml"
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
GPU_FAMILIES = ("g4dn", "g5", "g6", "g6e", "gr6", "p3", "p4d", "p4de", "p5", "p5e", "p5en")


@pytest.fixture
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_validate(cfg: dict) -> dict:
    """What `ray up` does before touching the cloud: merge the provider's defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def worker_types(cfg: dict) -> dict:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


def test_matches_rays_schema(cluster):
    jsonschema.validate(cluster, SCHEMA)


def test_passes_rays_own_validator(cluster):
    prepared = ray_validate(cluster)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


BREAKAGES = {
    # name: (how to break a copy, what the error must say)
    "unknown_top_level_key": (lambda c: c.update(worker_nodes_typo={}), "Additional properties"),
    "missing_provider": (lambda c: c.pop("provider"), "'provider' is a required property"),
    "string_resources": (lambda c: next(iter(worker_types(c).values()))["resources"].update(GPU="4"),
                         "is not of type 'integer'"),
    "bad_head_type": (lambda c: c.update(head_node_type="no.such.type"), "must be one of"),
    "min_above_global_max": (lambda c: next(iter(worker_types(c).values())).update(min_workers=c["max_workers"] + 1),
                             "smaller than the sum of `min_workers`"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_broken_copies_fail(cluster, breakage):
    """The schema or, past it, Ray's validator refuses each broken copy, for the expected reason."""
    broken = copy.deepcopy(cluster)
    breaker, message = BREAKAGES[breakage]
    breaker(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as err:
        jsonschema.validate(broken, SCHEMA)
        ray_validate(broken)
    assert message in str(err.value)


def test_head_runs_no_work_and_workers_have_gpus(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU")
    workers = worker_types(cluster)
    assert workers
    for name, node in workers.items():
        family = node["node_config"]["InstanceType"].split(".")[0]
        assert family in GPU_FAMILIES, f"{name}: {family} is not a GPU instance family"
        assert node["resources"].get("GPU", 0) > 0, name
        assert node["node_config"]["ImageId"].startswith("ami-")
        assert "IamInstanceProfile" in node["node_config"], f"{name} needs S3 access"


def test_worker_counts_are_consistent(cluster):
    total_min = 0
    for name, node in worker_types(cluster).items():
        assert 0 <= node["min_workers"] <= node["max_workers"] <= cluster["max_workers"], name
        total_min += node["min_workers"]
    assert total_min <= cluster["max_workers"]
    assert cluster["idle_timeout_minutes"] > 0


def test_setup_installs_this_package_with_the_tested_pins(cluster):
    mounts = cluster["file_mounts"]
    remote = next(r for r, local in mounts.items() if local == ".")  # the checkout itself
    setup = " ".join(cluster["setup_commands"])
    assert re.search(rf"pip install .*-e {re.escape(remote)}\b", setup), setup
    assert f"ray[default,data,train,tune]=={ray.__version__}" in setup
    assert re.search(r"'torch==[\d.]+'", setup)
    assert "~/.ray/auth_token" in mounts  # token auth needs the token on every node


def test_start_commands(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    worker = " ".join(cluster["worker_start_ray_commands"])
    assert "ray start --head" in head and "--port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--dashboard-host=0.0.0.0" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in worker


def test_gpu_preset_fits_the_cluster(cluster):
    """The AudioSet preset's largest stage (pretraining: trainers + separator actors) must be
    schedulable on the cluster at full size, or Ray waits forever for resources."""
    cfg = load_config(PRESET)
    assert cfg.separation.use_gpu and cfg.pretrain.use_gpu and cfg.augment.gpus_per_actor > 0
    assert cfg.separation.size == "paper" and cfg.data.path.startswith("s3://")
    gpus = sum(n["resources"]["GPU"] * n["max_workers"] for n in worker_types(cluster).values())
    cpus = sum(n["resources"]["CPU"] * n["max_workers"] for n in worker_types(cluster).values())
    pre, aug, sep, ev = cfg.pretrain, cfg.augment, cfg.separation, cfg.evaluation
    assert pre.num_workers + aug.max_actors * aug.gpus_per_actor <= gpus
    assert pre.num_workers * pre.cpus_per_worker + aug.max_actors * aug.cpus_per_actor < cpus
    assert sep.num_workers <= gpus
    assert ev.max_actors * ev.gpus_per_actor <= gpus
