"""What each stage asks Ray for, checked against the cluster before any Ray work starts.

Ray never refuses a request it cannot grant: a trainer, actor pool or decode task larger than
what is free just waits, and a job whose stage holds more than the cluster has waits forever
without a word. So every entry point computes, from the config alone, what each stage it will
run holds *at the same time* and compares that with the cluster; a job that cannot fit fails at
start with :class:`ClusterFitError`, naming the stage, the keys that add up, what the cluster
has and which keys to change.

What a stage holds at once (one *phase*; a stage of two phases holds them one after another):

    data        one decode task (data.cpus_per_task)
    separation  separation.num_workers trainers (cpus_per_worker CPU, 1 GPU with use_gpu)
                + one decode task; nothing with separation.use_ray false or separation.registry set
    augment     augment.min_actors actors (cpus_per_actor CPU, gpus_per_actor GPU) + one decode task
    pretrain    live views: the pretrain trainers + the augment actors + one decode task;
                precomputed: first the actors + one decode task, then the trainers;
                nothing with pretrain.use_ray false
    evaluate    evaluation.min_actors actors + one decode task; nothing with evaluation.use_ray false
    joint       the stages experiments/joint.py runs, one after another
    trial       one sweep trial: its pretraining, then its evaluation (the Tune driver holds 0 CPU)

Every pretraining variant of the joint job (the controls) keeps the resource keys of the
configured model, and every one of them, the mixture-only control included, runs its views
through the augmentation actor pool, so one pretrain check covers them all.

Besides the totals, every single bundle (one trainer worker, one actor, one decode task) must
fit on one alive node: Ray places a bundle on one node, so 2 x 1 CPU nodes never run a
1.5-CPU worker. An autoscaling cluster starts with almost nothing up (cluster/gpu.yaml: a
CPU-0 head); there `ray.max_resources` says what it can grow to, the totals are checked
against that and the per-node check is skipped.

Pure: no Ray import; sslsep.cluster.check_fits reads the live cluster and calls :func:`check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from sslsep.config import ConfigError, ExperimentConfig

EPS = 1e-6  # 0.1 + 0.2 CPUs fit 0.3
RESOURCES = ("CPU", "GPU")
STAGES = ("data", "separation", "augment", "pretrain", "evaluate", "joint", "trial")


class ClusterFitError(ValueError):
    """A stage asks for more than the cluster has (or can grow to): Ray would wait forever."""


def _amount(value: float, resource: str) -> str:
    """1 CPU, 0.5 CPU, 2.5 CPUs, 0 GPUs."""
    return f"{value:g} {resource}" + ("" if 0 < value <= 1 + EPS else "s")


@dataclass(frozen=True)
class Term:
    """One addend of a phase's total of one resource, as the config keys make it."""
    resource: str
    amount: float
    text: str                      # "pretrain.num_workers × pretrain.cpus_per_worker = 1 × 1 CPU"
    lower: tuple[str, ...] = ()    # keys whose lower value shrinks it
    switch: tuple[str, ...] = ()   # boolean keys that remove it when false
    rank: int = 0                  # order among equal amounts in the advice (cheapest change first)


@dataclass(frozen=True)
class Bundle:
    """What Ray places on one node: one trainer worker, one actor or one task."""
    what: str
    resources: dict
    lower: tuple[str, ...] = ()
    switch: tuple[str, ...] = ()


@dataclass
class Phase:
    """What one stage holds at the same time."""
    stage: str
    terms: list[Term] = field(default_factory=list)
    bundles: list[Bundle] = field(default_factory=list)

    def need(self, resource: str) -> float:
        return sum((t.amount for t in self.terms if t.resource == resource), 0.0)


# --------------------------------------------------------------------------- what stages hold

def _decode(cfg: ExperimentConfig) -> tuple[list[Term], list[Bundle]]:
    c = cfg.data.cpus_per_task
    return ([Term("CPU", c, f"data.cpus_per_task {_amount(c, 'CPU')}", ("data.cpus_per_task",), rank=2)],
            [Bundle("one decode task", {"CPU": c}, ("data.cpus_per_task",))])


def _trainers(section: str, s) -> tuple[list[Term], list[Bundle]]:
    """`s.num_workers` Ray Train workers of `section` (separation / pretrain)."""
    n, c = s.num_workers, s.cpus_per_worker
    count = (f"{section}.num_workers",) if n > 1 else ()
    terms = []
    if c > 0:
        terms.append(Term("CPU", n * c, f"{section}.num_workers × {section}.cpus_per_worker = {n} × "
                          f"{_amount(c, 'CPU')}", (f"{section}.cpus_per_worker", *count), rank=1))
    if s.use_gpu:
        terms.append(Term("GPU", float(n), f"{section}.num_workers × {section}.use_gpu = {n} × 1 GPU",
                          count, (f"{section}.use_gpu",), rank=1))
    terms += _custom(section, "num_workers", n, s.resources)
    bundle = Bundle(f"one {section} worker", {"CPU": c, "GPU": 1.0 if s.use_gpu else 0.0, **s.resources},
                    (f"{section}.cpus_per_worker",) if c > 0 else (),
                    (f"{section}.use_gpu",) if s.use_gpu else ())
    return terms, [bundle]


def _actors(section: str, a) -> tuple[list[Term], list[Bundle]]:
    """The `a.min_actors` actors an ActorPoolStrategy of `section` (augment / evaluation) starts with."""
    n = a.min_actors
    count = (f"{section}.min_actors",) if n > 1 else ()
    terms = []
    for resource, key in (("CPU", "cpus_per_actor"), ("GPU", "gpus_per_actor")):
        per = getattr(a, key)
        if per > 0:
            terms.append(Term(resource, n * per, f"{section}.min_actors × {section}.{key} = {n} × "
                              f"{_amount(per, resource)}", (f"{section}.{key}", *count), rank=0))
    terms += _custom(section, "min_actors", n, a.resources)
    bundle = Bundle(f"one {section} actor", {"CPU": a.cpus_per_actor, "GPU": a.gpus_per_actor, **a.resources},
                    tuple(f"{section}.{k}" for k in ("cpus_per_actor", "gpus_per_actor") if getattr(a, k) > 0))
    return terms, [bundle]


def _custom(section: str, count_key: str, n: int, resources: dict) -> list[Term]:
    """Terms of the custom resources (`{section}.resources`) that `n` workers or actors hold."""
    return [Term(r, n * v, f"{section}.{count_key} × {section}.resources.{r} = {n} × {v:g} {r}",
                 (f"{section}.resources",), rank=1) for r, v in resources.items()]


def _phase(stage: str, *parts: tuple[list[Term], list[Bundle]]) -> Phase:
    phase = Phase(stage)
    for terms, bundles in parts:
        phase.terms += terms
        phase.bundles += bundles
    return phase


def _pretrain(cfg: ExperimentConfig, label: str) -> list[Phase]:
    if not cfg.pretrain.use_ray:
        return []
    trainers, actors, decode = _trainers("pretrain", cfg.pretrain), _actors("augment", cfg.augment), _decode(cfg)
    if cfg.pretrain.views_source == "precomputed":
        return [_phase(f"{label} (computing the precomputed views)", actors, decode),
                _phase(f"{label} (training on the precomputed views)", trainers)]
    return [_phase(label, trainers, actors, decode)]


def _evaluate(cfg: ExperimentConfig, label: str = "evaluate") -> list[Phase]:
    if not cfg.evaluation.use_ray:
        return []
    return [_phase(label, _actors("evaluation", cfg.evaluation), _decode(cfg))]


def phases(cfg: ExperimentConfig, stages: Iterable[str]) -> list[Phase]:
    """What `stages` hold, phase by phase, in the order they run."""
    out: list[Phase] = []
    stages = [stages] if isinstance(stages, str) else stages
    for stage in stages:
        if stage == "data":
            out.append(_phase("data", _decode(cfg)))
        elif stage == "separation":
            if cfg.separation.use_ray and not cfg.separation.registry:
                out.append(_phase("separation", _trainers("separation", cfg.separation), _decode(cfg)))
        elif stage == "augment":
            out.append(_phase("augment", _actors("augment", cfg.augment), _decode(cfg)))
        elif stage == "pretrain":
            out += _pretrain(cfg, "pretrain")
        elif stage == "evaluate":
            out += _evaluate(cfg)
        elif stage == "joint":
            out += phases(cfg, ["data", "separation", "pretrain"] + (["evaluate"] if cfg.joint.evaluate else []))
        elif stage == "trial":
            out += _pretrain(cfg, "one trial") + _evaluate(cfg, "one trial's evaluation")
        else:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return out


def need(cfg: ExperimentConfig, stages: Iterable[str]) -> dict[str, float]:
    """The most of each resource any phase of `stages` holds at once ({'CPU': .., 'GPU': ..})."""
    plan = phases(cfg, stages)
    return {r: max((p.need(r) for p in plan), default=0.0) for r in RESOURCES}


# --------------------------------------------------------------------------- the check

def max_resources(cfg: ExperimentConfig) -> dict[str, float]:
    """`ray.max_resources` as numbers ({} = not set); a bad value is a ConfigError naming the key."""
    out = {}
    for name, value in (cfg.ray.max_resources or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"key 'ray.max_resources' maps {name!r} to {value!r}; expected a number >= 0, "
                              "e.g. {CPU: 192, GPU: 16}")
        out[str(name)] = float(value)
    return out


def capacity(cfg: ExperimentConfig, total: dict) -> dict[str, float]:
    """What the totals are checked against: `ray.max_resources` when set, else `total`
    (ray.cluster_resources()). A resource it does not name counts as 0."""
    cap = max_resources(cfg) or total
    return {r: float(cap.get(r, 0) or 0) for r in RESOURCES}


def _or(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} or {keys[-1]}"


def _advice(terms: Sequence[Term], more: str) -> str:
    """'lower a or b, set c=false, or add CPUs' from the terms that add up (largest first)."""
    ordered = sorted(terms, key=lambda t: (-t.amount, t.rank))
    main = [t for t in ordered if t.rank < 2] or ordered  # decoding is already a sliver of a CPU
    lower = list(dict.fromkeys(k for t in main for k in t.lower))
    switch = list(dict.fromkeys(k for t in main for k in t.switch))
    parts = ([f"lower {_or(lower)}"] if lower else []) + [f"set {k}=false" for k in switch] + [more]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])}, or {parts[-1]}"


def _has(have: dict[str, float]) -> str:
    return ", ".join(_amount(have.get(r, 0.0), r) for r in RESOURCES)


def _fits_on(bundle: Bundle, node: dict) -> bool:
    return all(v <= float(node.get(r, 0) or 0) + EPS for r, v in bundle.resources.items())


def problems(plan: Sequence[Phase], total: dict, nodes: Sequence[dict] | None = None,
             limit: dict[str, float] | None = None) -> list[str]:
    """One sentence per phase resource or bundle that cannot be granted. `total`: the cluster's
    resources (ray.cluster_resources()); `nodes`: each alive node's (None: not checked);
    `limit`: ray.max_resources when set (then the totals are checked against it, nodes not)."""
    grow = bool(limit)
    custom = sorted({t.resource for p in plan for t in p.terms} - set(RESOURCES))
    have = {r: float((limit if grow else total).get(r, 0) or 0) for r in (*RESOURCES, *custom)}
    where = (f"ray.max_resources lets the cluster grow to {_has(have)}" if grow else f"the cluster has {_has(have)}")
    out = []
    for phase in plan:
        for r in (*RESOURCES, *custom):
            terms = [t for t in phase.terms if t.resource == r and t.amount > 0]
            n = sum(t.amount for t in terms)
            if n > have[r] + EPS:
                more = f"raise ray.max_resources.{r} (and the nodes the cluster may start)" if grow else f"add {r}s"
                out.append(f"{phase.stage} needs {_amount(n, r)} at once: {' + '.join(t.text for t in terms)} = "
                           f"{_amount(n, r)}, but {where}: {_advice(terms, more)}")
    if grow or not nodes:
        return out
    seen = set()
    for phase in plan:
        for b in phase.bundles:
            if b.what in seen or any(_fits_on(b, node) for node in nodes):
                continue
            seen.add(b.what)
            asks = " and ".join(_amount(v, r) for r, v in b.resources.items() if v > 0)
            shapes: dict[str, int] = {}
            for node in nodes:
                shape = _has({r: float(node.get(r, 0) or 0) for r in RESOURCES})
                shapes[shape] = shapes.get(shape, 0) + 1
            alive = "; ".join(f"{k} × ({s})" for s, k in shapes.items())
            keys = [*b.lower, *b.switch]
            fix = ([f"lower {_or(list(b.lower))}"] if b.lower else []) + [f"set {k}=false" for k in b.switch]
            out.append(f"{phase.stage}: {b.what} needs {asks} on one node ({', '.join(keys)}), but no alive node "
                       f"has that (nodes: {alive}): {', '.join(fix + ['or add a node that large'])}")
    return out


def check(cfg: ExperimentConfig, stages: Iterable[str], total: dict,
          nodes: Sequence[dict] | None = None) -> list[Phase]:
    """Raise :class:`ClusterFitError` unless every phase of `stages` fits: its totals within
    `total` (or `ray.max_resources`), each bundle on one of `nodes` (unless max_resources is set
    or nodes is None). Returns the phases checked."""
    plan = phases(cfg, stages)
    found = problems(plan, total, nodes, max_resources(cfg))
    if found:
        raise ClusterFitError("; ".join(found))
    return plan


def summary(plan: Sequence[Phase], total: dict, limit: dict[str, float] | None = None) -> str:
    """One line for the log: the largest phase and what it holds of the cluster."""
    if not plan:
        return "no stage holds Ray resources"
    have = {r: float(((limit or total).get(r, 0)) or 0) for r in RESOURCES}
    big = max(plan, key=lambda p: tuple(p.need(r) for r in reversed(RESOURCES)))
    of = ", ".join(f"{big.need(r):g} of {have[r]:g} {r}s" for r in RESOURCES)
    which = f"the largest stage, {big.stage}," if len({p.stage for p in plan}) > 1 else big.stage
    return f"fits: {which} holds {of}" + (" (ray.max_resources)" if limit else "")
