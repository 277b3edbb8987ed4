"""The verdict of a joint run: separated views against mixture-only, paired, with its spread."""

import statistics

import pytest

from sslsep.pipeline import split_row_name, verdict


def row(name, clf, per_split, metric="accuracy"):
    folds = [{"split": f"fold {i}", metric: v} for i, v in enumerate(per_split)]
    return {"extractor": name, "classifier": clf, metric: statistics.fmean(per_split), "folds": folds}


def results(rows, multilabel=False):
    """A suite of one task (tests/test_suite.py pools several)."""
    return {"tasks": [{"name": "t", "protocol": {"multilabel": multilabel}, "rows": rows}]}


def test_row_names_carry_their_seed():
    assert split_row_name("mixture-only [seed 2]") == ("mixture-only", 2)
    assert split_row_name("configured (separated views, sim + coinc) [seed 10]") == \
        ("configured (separated views, sim + coinc)", 10)
    assert split_row_name("logmel-stats") == ("logmel-stats", None)


def test_one_run_is_paired_over_its_splits():
    ours = row("configured (separated views, sim + coinc)", "linear", [0.60, 0.62, 0.58, 0.61, 0.63])
    mix = row("mixture-only", "linear", [0.50, 0.51, 0.49, 0.52, 0.50])
    line = verdict(results([ours, mix]))
    assert "separated views BEAT mixture-only" in line and "one run, paired over 5 splits" in line
    assert "separated better on 5/5" in line and "diff +0.104" in line
    noisy = row("mixture-only", "linear", [0.70, 0.40, 0.62, 0.50, 0.60])  # same mean gap, big spread
    assert "not conclusive" in verdict(results([ours, noisy])) or "no clear" in verdict(results([ours, noisy]))


def test_several_runs_take_their_spread_over_runs_not_splits():
    rows = []
    # every split favours separated views within a run, but the runs disagree: the verdict must not BEAT
    for seed, gap in ((0, 0.10), (1, -0.08), (2, 0.02)):
        rows.append(row(f"configured (x) [seed {seed}]", "linear", [0.5 + gap + e for e in (0.0, 0.01, -0.01)]))
        rows.append(row(f"mixture-only [seed {seed}]", "linear", [0.5 + e for e in (0.0, 0.01, -0.01)]))
    rows.append(row("logmel-stats", "linear", [0.3, 0.3, 0.3]))
    line = verdict(results(rows))
    assert "paired over 3 runs (seeds 0, 1, 2) x 3 splits" in line
    assert "separated better in 2/3 runs and 6/9 splits" in line
    assert "BEAT" not in line
    se = statistics.stdev([0.10, -0.08, 0.02]) / 3 ** 0.5
    assert f"standard error {se:.3f} over runs" in line
    rows = [r for r in rows if "seed 1" not in r["extractor"]]
    rows += [row("configured (x) [seed 1]", "linear", [0.58, 0.59, 0.57]),
             row("mixture-only [seed 1]", "linear", [0.5, 0.51, 0.49])]
    assert "separated views BEAT mixture-only" in verdict(results(rows))


def test_one_split_has_no_spread_and_no_control_is_said():
    ours = row("configured (x)", "mlp", [0.80], metric="mAP")
    mix = row("mixture-only", "mlp", [0.795], metric="mAP")
    assert "no spread estimate" in verdict(results([ours, mix], multilabel=True))
    assert "no clear difference (under 0.01)" in verdict(results([ours, mix], multilabel=True))
    assert "no mixture-only control" in verdict(results([ours]))


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("seeds", [[0, 1]])
def test_joint_seeds_pretrain_every_variant_per_seed(tmp_path, seeds):
    """The in-process debug job with two seeds: a directory and a results row per variant and seed,
    the verdict over both runs, the table saying how many runs."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    sets = ["separation.use_ray=false", "pretrain.use_ray=false", "joint.controls=[mixture-only]",
            f"joint.seeds={seeds}", "evaluation.synth_folds=2", "evaluation.max_epochs=2"]
    cmd = [sys.executable, str(repo / "experiments" / "joint.py"), "--config",
           str(repo / "experiments" / "configs" / "debug.yaml"), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for variant in ("configured", "mixture-only"):
        for seed in seeds:
            enc = out / "pretrain" / variant / f"seed-{seed}" / "encoder.pt"
            assert enc.exists(), enc
    res_json = json.loads((out / "results.json").read_text())
    names = [r["extractor"] for r in res_json["tasks"][0]["rows"]]
    assert "mixture-only [seed 0]" in names and "mixture-only [seed 1]" in names
    assert any(n.startswith("configured (") and n.endswith("[seed 1]") for n in names)
    assert res_json["runs"] == {"seeds": seeds}
    assert "Runs: 2 pretraining seeds (0, 1)" in (out / "results.md").read_text()
    text = (out / "verdict.txt").read_text()
    assert "synthetic: verdict (linear, mAP)" in text and "paired over 2 runs (seeds 0, 1) x 2 splits" in text
    assert "suite verdict (linear, 1 task(s): synthetic)" in text and "pooled over 4 pairs" in text
    assert "over the 2 seeds' suite means" in text
    # the two seeds trained different encoders
    import torch
    a = torch.load(out / "pretrain" / "configured" / "seed-0" / "encoder.pt", weights_only=False)
    b = torch.load(out / "pretrain" / "configured" / "seed-1" / "encoder.pt", weights_only=False)
    key = next(k for k in a["state_dict"] if k.endswith("weight"))
    assert not torch.equal(a["state_dict"][key], b["state_dict"][key])
