"""Sweep files: a small declarative search space over separator checkpoints, view
combinations and loss weights, read strictly, and the pure functions that turn it into
Optuna suggestions and config values. No Ray here.

    name: quick-sweep
    config: ../configs/quick.yaml        # the base experiment config (relative to this file)
    set: {pretrain.batch_clips: 16}      # fixed config values for every trial
    metric: mAP                          # of the per-trial evaluation: mAP, auc, d_prime or accuracy
    mode: max
    num_samples: 8
    rungs: [30, 60]                      # pretraining steps at which a trial is judged (ASHA rungs)
    start: [{views: separated}]          # points tried first (optional)
    space:
      views:
        choice:
          separated: {augment.kinds: [mixture, channel, sum]}
          mixture-only: {augment.kinds: [mixture]}
      separators: {subsets: registry, min_size: 1, when: {views: [separated, channels-only]}}
      pretrain.w_coinc: {uniform: [0.0, 1.0]}
      pretrain.temperature: {loguniform: [0.05, 0.5]}

`set` and each named bundle map dotted config keys to values, written as in a config file
(`augment.kinds: [mixture]`, a path with `#` or `: ` quoted as any YAML string). The older
form, a list of "dotted.key=value" strings, is still read, here and only here (`_values`),
the way the command line reads `--set`; past loading, a sweep holds values only.

Parameter kinds: `uniform: [lo, hi]`, `loguniform: [lo, hi]`, `int: [lo, hi]`,
`choice: [values]` (values are config values), `choice: {name: {dotted.key: value}}`
(named bundles of config values), `subsets: registry` (non-empty subsets of the registry's
convergence states, as `augment.separators`). `when: {param: [values]}` makes a parameter
conditional on an earlier categorical one. Dotted names are config keys; other names need a
bundle (`choice` with a mapping) or `subsets`. Every key and value is checked against the
config's keys, types and ranges when the file is read; the rules that relate keys once the
base config is known (`sslsep.tuning.sweep.check_trials`), before anything trains.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sslsep.config import ConfigError, _yaml, check_values, parse_override

KINDS = ("uniform", "loguniform", "int", "choice", "subsets")
TOP_KEYS = {"name", "config", "set", "metric", "mode", "num_samples", "rungs", "space", "max_concurrent_trials",
            "storage", "seed", "max_failures", "asha", "start"}
METRICS = ("mAP", "auc", "d_prime", "accuracy")  # keys of an evaluation's rows


@dataclass
class Param:
    name: str
    kind: str
    args: Any
    when: dict[str, list] = field(default_factory=dict)
    min_size: int = 1


@dataclass
class SweepSpec:
    name: str
    config: str  # base experiment config, absolute path ('' = defaults)
    params: list[Param]
    set: dict[str, Any] = field(default_factory=dict)  # {dotted.key: value} for every trial
    metric: str = "mAP"
    mode: str = "max"
    num_samples: int = 8
    rungs: list[int] = field(default_factory=lambda: [100])
    max_concurrent_trials: int = 0  # 0 = as many as the cluster's resources allow
    storage: str = ""  # '' = sqlite under the sweep's run directory
    seed: int = 0
    max_failures: int = 1
    asha: dict = field(default_factory=lambda: {"grace_period": 1, "reduction_factor": 2})
    start: list[dict] = field(default_factory=list)  # points tried first (known-good settings)
    source: str = ""

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self, default=lambda o: o.__dict__))


def spec_from_dict(d: dict) -> SweepSpec:
    """Inverse of SweepSpec.to_dict (how a spec travels to Ray workers)."""
    return SweepSpec(**{**d, "params": [Param(**p) for p in d["params"]]})


def _err(origin: str, msg: str) -> ConfigError:
    return ConfigError(f"{origin}: {msg}")


def _values(raw: Any, where: str, origin: str) -> dict[str, Any]:
    """Config values of a sweep file (`set`, a choice bundle) -> {dotted.key: value}, each
    checked against the config's keys, types and ranges. A mapping is taken as it is; a list
    of "dotted.key=value" strings (the older form) is parsed here as `--set` parses them: the
    one place a sweep's strings become values."""
    if raw is None:
        return {}
    if isinstance(raw, list):
        values = {}
        for text in raw:
            if not isinstance(text, str):
                raise _err(origin, f"{where}: {text!r} is not a 'dotted.key=value' string")
            try:
                keys, value = parse_override(text)
            except ConfigError as e:
                raise _err(origin, f"{where}: {e}") from None
            values[".".join(keys)] = value
    elif isinstance(raw, dict):
        values = dict(raw)
    else:
        raise _err(origin, f"{where} must map config keys to values, e.g. {{pretrain.lr: 3.0e-4}}; got {raw!r}")
    check_values(values, f"{origin}: {where}")
    return values


def _param(name: str, body: Any, origin: str, earlier: dict[str, Param]) -> Param:
    if not isinstance(body, dict):
        raise _err(origin, f"space.{name} must be a mapping such as {{uniform: [0, 1]}}")
    kinds = [k for k in body if k in KINDS]
    unknown = set(body) - set(KINDS) - {"when", "min_size"}
    if unknown or len(kinds) != 1:
        raise _err(origin, f"space.{name}: give exactly one of {list(KINDS)} (unknown keys: {sorted(unknown)})")
    kind, args = kinds[0], body[kinds[0]]
    if kind in ("uniform", "loguniform", "int"):
        if not (isinstance(args, list) and len(args) == 2 and all(isinstance(v, (int, float)) for v in args)
                and args[0] < args[1]):
            raise _err(origin, f"space.{name}.{kind} must be [low, high] with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise _err(origin, f"space.{name}.loguniform needs low > 0, got {args[0]}")
    if kind == "choice" and not (isinstance(args, (list, dict)) and len(args) > 0):
        raise _err(origin, f"space.{name}.choice must be a non-empty list or mapping")
    if kind == "choice" and isinstance(args, dict):
        args = {label: _values(bundle, f"space.{name}.choice.{label}", origin) for label, bundle in args.items()}
    if kind == "subsets" and args != "registry":
        raise _err(origin, f"space.{name}.subsets must be 'registry'")
    if kind != "subsets" and not (kind == "choice" and isinstance(args, dict)) and "." not in name:
        raise _err(origin, f"space.{name}: a plain value needs a dotted config key (e.g. pretrain.lr)")
    if kind in ("uniform", "loguniform", "int", "choice") and not isinstance(args, dict):
        for value in args:  # the bounds, or every choice: each must be a value the key takes
            value = float(value) if kind in ("uniform", "loguniform") else value  # what Optuna suggests
            check_values({name: value}, f"{origin}: space.{name}.{kind}")
    when = body.get("when", {})
    if not isinstance(when, dict):
        raise _err(origin, f"space.{name}.when must map an earlier parameter to its values")
    for other, values in when.items():
        if other not in earlier or earlier[other].kind not in ("choice",):
            raise _err(origin, f"space.{name}.when: {other!r} must be an earlier choice parameter")
        labels = _labels(earlier[other])
        bad = [v for v in values if v not in labels]
        if bad:
            raise _err(origin, f"space.{name}.when.{other}: {bad} are not among {labels}")
    return Param(name, kind, args, {k: list(v) for k, v in when.items()}, int(body.get("min_size", 1)))


def _labels(p: Param) -> list:
    """A choice's values (or its bundle names, for a mapping)."""
    return list(p.args)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep file strictly: unknown keys, bad ranges or modes name the key and the file."""
    origin = str(path)
    try:
        raw = _yaml(Path(path).read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{origin}: cannot read sweep file ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: a sweep file is a mapping (name, space, ...)")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise _err(origin, f"unknown key(s) {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    if not isinstance(raw.get("space"), dict) or not raw["space"]:
        raise _err(origin, "'space' must map parameter names to distributions")
    params: dict[str, Param] = {}
    for name, body in raw["space"].items():
        params[name] = _param(str(name), body, origin, params)
    base = raw.get("config", "")
    if base:
        base = str((Path(path).resolve().parent / base).resolve())
        if not Path(base).exists():
            raise _err(origin, f"config: {base} does not exist")
    spec = SweepSpec(name=str(raw.get("name", Path(path).stem)), config=base, params=list(params.values()),
                     set=_values(raw.get("set"), "set", origin), source=str(Path(path).resolve()))
    for key in ("metric", "mode", "num_samples", "rungs", "max_concurrent_trials", "storage", "seed",
                "max_failures", "asha", "start"):
        if key in raw:
            setattr(spec, key, raw[key])
    if spec.metric not in METRICS:
        raise _err(origin, f"metric must be one of {list(METRICS)}, got {spec.metric!r}")
    if spec.mode not in ("max", "min"):
        raise _err(origin, f"mode must be max or min, got {spec.mode!r}")
    if not (isinstance(spec.rungs, list) and spec.rungs and all(isinstance(r, int) and r > 0 for r in spec.rungs)
            and spec.rungs == sorted(set(spec.rungs))):
        raise _err(origin, f"rungs must be increasing positive step counts, got {spec.rungs!r}")
    if not isinstance(spec.num_samples, int) or spec.num_samples < 1:
        raise _err(origin, f"num_samples must be a positive integer, got {spec.num_samples!r}")
    for i, point in enumerate(spec.start):
        unknown = set(point) - set(params) if isinstance(point, dict) else {"(not a mapping)"}
        if unknown:
            raise _err(origin, f"start[{i}]: {sorted(unknown)} are not parameters of the space")
    if set(spec.asha) - {"grace_period", "reduction_factor"}:
        raise _err(origin, f"asha takes grace_period and reduction_factor, got {sorted(spec.asha)}")
    return spec


def subsets(states: list[str], min_size: int = 1) -> list[str]:
    """Non-empty subsets of the registry's states as '+'-joined names, smallest first."""
    out = []
    for k in range(max(1, min_size), len(states) + 1):
        out += ["+".join(c) for c in itertools.combinations(states, k)]
    return out


def suggest(trial, spec: SweepSpec, states: list[str]) -> None:
    """Optuna define-by-run space: only suggestions, no computation (conditional
    parameters are skipped when their `when` does not hold)."""
    chosen: dict[str, Any] = {}
    for p in spec.params:
        if any(chosen.get(other) not in values for other, values in p.when.items()):
            continue
        if p.kind == "uniform":
            chosen[p.name] = trial.suggest_float(p.name, *p.args)
        elif p.kind == "loguniform":
            chosen[p.name] = trial.suggest_float(p.name, *p.args, log=True)
        elif p.kind == "int":
            chosen[p.name] = trial.suggest_int(p.name, *p.args)
        elif p.kind == "choice":
            chosen[p.name] = trial.suggest_categorical(p.name, _labels(p))
        else:
            chosen[p.name] = trial.suggest_categorical(p.name, subsets(states, p.min_size))


def trial_overrides(params: dict[str, Any], spec: SweepSpec) -> dict[str, Any]:
    """A trial's sampled parameters -> {dotted.key: value} (applied after the sweep's `set`)."""
    out: dict[str, Any] = {}
    for p in spec.params:
        if p.name not in params:
            continue  # a conditional parameter that did not apply
        value = params[p.name]
        if p.kind == "subsets":
            out["augment.separators"] = str(value).split("+")
        elif p.kind == "choice" and isinstance(p.args, dict):
            out.update(p.args[value])
        else:
            out[p.name] = value
    return out
