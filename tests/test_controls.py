"""The paper's controls as config overrides: each changes one thing and keeps the budget."""

import pytest

from sslsep.config import ConfigError, load_config, to_dict
from sslsep.contrastive.controls import CONTROL_OVERRIDES, control_config, describe


def _diff(a: dict, b: dict, prefix="") -> set[str]:
    out = set()
    for k in a:
        if isinstance(a[k], dict):
            out |= _diff(a[k], b[k], f"{prefix}{k}.")
        elif a[k] != b[k]:
            out.add(prefix + k)
    return out


@pytest.mark.parametrize("name", sorted(CONTROL_OVERRIDES))
def test_each_control_changes_only_views_or_objectives(name):
    cfg = load_config(None, ["pretrain.steps=77", "augment.views_per_clip=3"])
    ctl = control_config(cfg, name)
    changed = _diff(to_dict(cfg), to_dict(ctl))
    assert changed and changed <= {"augment.kinds", "augment.anchor_mixture", "pretrain.w_sim", "pretrain.w_coinc"}
    assert ctl.pretrain.steps == 77 and ctl.augment.views_per_clip == 3  # same budget
    assert to_dict(cfg) == to_dict(load_config(None, ["pretrain.steps=77", "augment.views_per_clip=3"]))


def test_labels_say_which_views_and_objectives():
    cfg = load_config(None, [])
    assert describe(cfg) == "separated views, sim + coinc"
    assert describe(control_config(cfg, "mixture-only")) == "mixture-only views, sim + coinc"
    assert describe(control_config(cfg, "coinc-only")) == "separated views, coinc"
    assert describe(control_config(cfg, "mixture-channel")) == "mixture<->channel views, sim + coinc"


def test_unknown_control_is_refused():
    with pytest.raises(ConfigError, match="joint.controls"):
        load_config(None, ["joint.controls=[mixture-only, nope]"])
    with pytest.raises(KeyError, match="nope"):
        control_config(load_config(None, []), "nope")


def test_controls_are_values_and_are_checked_before_any_stage():
    from sslsep.pipeline import variants

    assert all(isinstance(v, dict) and all("=" not in k for k in v) for v in CONTROL_OVERRIDES.values())
    assert control_config(load_config(None, []), "mixture-only").augment.kinds == ["mixture"]
    # sim-only on a config that already learns no similarity: nothing left to learn; joint.py
    # builds every variant before its first stage, so this is refused up front
    cfg = load_config(None, ["pretrain.w_sim=0", "joint.controls=[mixture-only, sim-only]"])
    with pytest.raises(ConfigError, match=r"^control sim-only \(joint.controls\): keys 'pretrain.w_sim' and "
                                          r"'pretrain.w_coinc' are both 0"):
        variants(cfg)
