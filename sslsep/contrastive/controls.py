"""The paper's comparisons as config values on one pretraining setup.

Every control keeps the configured budget (steps, batch, views per clip, crop, encoder) and
changes only what it names, so a results row differs from the configured model in one
respect. Pure config; no torch, no Ray.
"""

from __future__ import annotations

from typing import Any

from sslsep.config import ExperimentConfig, replace

CONTROL_OVERRIDES: dict[str, dict[str, Any]] = {
    # no separation: two crops of the mixture (COLA-style)
    "mixture-only": {"augment.kinds": ["mixture"], "augment.anchor_mixture": False},
    # separated views only: single channels and channel sums, never the mixture
    "channels-only": {"augment.kinds": ["channel", "sum"], "augment.anchor_mixture": False},
    # the mixture against one separated channel
    "mixture-channel": {"augment.kinds": ["channel"], "augment.anchor_mixture": True},
    # one objective at a time
    "sim-only": {"pretrain.w_coinc": 0.0},
    "coinc-only": {"pretrain.w_sim": 0.0},
}


def control_config(cfg: ExperimentConfig, name: str) -> ExperimentConfig:
    """`cfg` with the values of control `name` (a new config, checked like a loaded one)."""
    if name not in CONTROL_OVERRIDES:
        raise KeyError(f"unknown control {name!r}; choose from {sorted(CONTROL_OVERRIDES)}")
    return replace(cfg, CONTROL_OVERRIDES[name], origin=f"control {name} (joint.controls)")


def describe(cfg: ExperimentConfig) -> str:
    """A row label for a pretraining setup: which views, which objectives."""
    kinds = cfg.augment.kinds
    if kinds == ["mixture"]:
        views = "mixture-only views"
    elif "mixture" not in kinds and cfg.augment.anchor_mixture:
        views = "mixture<->channel views"
    elif "mixture" not in kinds:
        views = "separated-only views"
    else:
        views = "separated views"
    objectives = [n for n, w in (("sim", cfg.pretrain.w_sim), ("coinc", cfg.pretrain.w_coinc)) if w > 0]
    return f"{views}, {' + '.join(objectives)}"

