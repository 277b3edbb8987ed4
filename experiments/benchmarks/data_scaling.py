"""Does more (and other) unlabelled audio help, and do separated views keep their lead?

    python experiments/benchmarks/data_scaling.py [--preset quick] [--seeds 0 1 2] \\
        [--settings us8k esc50 both] [--out runs/data-scaling]

Pretrains on the same step budget (the preset's) on (a) UrbanSound8K fold 1 alone, (b)
ESC-50 dev alone, (c) both in one stream, each with every pretraining seed (`joint.seeds`),
and judges every encoder on both tasks (the corpus a run did not pretrain on is an
`evaluation.tasks` entry: transfer to audio the encoder never heard). Each setting is one
`experiments/joint.py` job, as users run it, in its own run directory (a rerun resumes).

Separators: every setting's convergence states are scored on held-out mixtures of mixtures of
each corpus (`separation.val_clips` clips of recordings held out of MixIT training:
SI-SNR improvement of the remixed outputs, dB), and the states are compared with one another
on the same mixtures: for two states, each channel of one is matched to its closest channel of
the other by SI-SNR (dB; higher = the states separate alike; the paper's premise is that they
differ).

Per setting and task: the configured model and mixture-only (mean over seeds, standard error
over seeds), their paired difference (standard error over seeds; splits won over seeds x
splits), log-mel statistics and random-init. Prints one JSON line; writes
results/data_scaling[_<preset>].json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
CORPORA = {"us8k": DATA / "urbansound8k-fold1", "esc50": DATA / "esc50-dev"}
SETTINGS = {"us8k": ["us8k"], "esc50": ["esc50"], "both": ["us8k", "esc50"]}


def run_setting(name: str, preset: str, seeds: list[int], out: Path, extra: list[str]) -> tuple[Path, float, int]:
    """One joint job: pretrain on the setting's corpora, judge on both. -> (run dir, wall s, rc)."""
    run = out / f"{preset}-{name}"
    used = SETTINGS[name]
    cmd = [sys.executable, str(REPO / "experiments" / "joint.py"), "--config",
           str(REPO / "experiments" / "configs" / f"{preset}.yaml"), "--out", str(run),
           "--set", f"joint.seeds={json.dumps(seeds)}", "--set", "joint.report_clips=0"]
    for c in used:
        cmd += ["--data", str(CORPORA[c])]
    others = [str(CORPORA[c]) for c in CORPORA if c not in used]
    if others:
        cmd += ["--set", "evaluation.tasks=" + json.dumps([{"path": p} for p in others])]
    cmd += extra
    t0 = time.monotonic()
    with open(out / f"{preset}-{name}.log", "a") as log:
        rc = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    return run, time.monotonic() - t0, rc


def se(values: list[float]) -> float | None:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) >= 2 else None


def probe_table(results: dict, classifier: str) -> dict:
    """Per task: configured and mixture-only over seeds, their paired difference, baselines."""
    from sslsep.pipeline import split_row_name

    out = {}
    for task in results["tasks"]:
        metric = "mAP" if task["protocol"]["multilabel"] else "accuracy"
        by: dict[str, dict] = {}
        for r in task["rows"]:
            if r["classifier"] != classifier:
                continue
            name, seed = split_row_name(r["extractor"])
            kind = "configured" if name.startswith("configured") else name
            by.setdefault(kind, {})[seed] = r
        ours, mix = by.get("configured", {}), by.get("mixture-only", {})
        seeds = sorted(s for s in ours if s in mix)
        diffs = [ours[s][metric] - mix[s][metric] for s in seeds]
        pairs = [a[metric] - b[metric] for s in seeds
                 for a, b in zip(ours[s].get("folds", []), mix[s].get("folds", []))]
        out[task["name"]] = {
            "metric": metric, "seeds": seeds,
            "configured": round(statistics.fmean(ours[s][metric] for s in seeds), 4),
            "configured_se": se([ours[s][metric] for s in seeds]),
            "mixture_only": round(statistics.fmean(mix[s][metric] for s in seeds), 4),
            "mixture_only_se": se([mix[s][metric] for s in seeds]),
            "diff": round(statistics.fmean(diffs), 4), "diff_se": se(diffs),
            "seeds_won": sum(d > 0 for d in diffs), "splits_won": f"{sum(d > 0 for d in pairs)}/{len(pairs)}",
            **{k: round(next(iter(by[k].values()))[metric], 4) for k in ("logmel-stats", "random-init") if k in by}}
    return out


def separator_table(run: Path, preset: str) -> dict:
    """Every convergence state of the run on each corpus's held-out mixtures of mixtures, and
    how alike the states separate (closest-channel SI-SNR between states, dB)."""
    import itertools

    import torch

    from sslsep.config import load_config
    from sslsep.separation.mixit import mixture_of_mixtures
    from sslsep.separation.metrics import pairwise_si_snr
    from sslsep.separation.train import evaluate, validation_set
    from sslsep.views.service import load_separators

    seps = load_separators(str(run / "registry.json"), [])
    out = {}
    for corpus, path in CORPORA.items():
        cfg = load_config(REPO / "experiments" / "configs" / f"{preset}.yaml", [], data=str(path))
        val = validation_set(cfg)
        row = {name: round(evaluate(m, val, cfg.separation.snr_max)["val_mom_si_snri"], 2) for name, m in seps.items()}
        pairs = val["audio"][: val["audio"].shape[0] // 2 * 2]
        mom, _ = mixture_of_mixtures(pairs)  # (P, T)
        with torch.inference_mode():
            est = {n: m(mom) for n, m in seps.items()}  # (P, M, T)
        alike = {}
        for a, b in itertools.combinations(sorted(est), 2):
            s = pairwise_si_snr(est[a], est[b])  # (P, M_b, M_a): each channel of b against each of a
            alike[f"{a}~{b}"] = round(float(s.amax(-1).clamp(max=60.0).mean()), 2)
        out[corpus] = {"val_mom_si_snri_db": row, "state_similarity_db": alike}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--out", default=str(REPO / "runs" / "data-scaling"))
    ap.add_argument("--classifier", default="linear")
    ap.add_argument("extra", nargs="*", help="more joint.py arguments (after --)")
    args = ap.parse_args()
    for c, p in CORPORA.items():
        if not p.exists():
            raise SystemExit(f"{p}: the {c} corpus is absent (it ships beside the repo, not in it)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "data_scaling", "preset": args.preset, "seeds": args.seeds, "classifier": args.classifier,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text()}, "settings": {}}
    for name in args.settings:
        run, wall, rc = run_setting(name, args.preset, args.seeds, out, args.extra)
        entry = {"run": str(run), "wall_s": round(wall, 1), "rc": rc}
        if (run / "results.json").exists():
            results = json.loads((run / "results.json").read_text())
            entry["probe"] = probe_table(results, args.classifier)
            entry["suite"] = results.get("suite", {}).get("verdict")
            entry["separators"] = separator_table(run, args.preset)
        record["settings"][name] = entry
        print(json.dumps({name: entry}), file=sys.stderr, flush=True)
    dest = REPO / "experiments" / "benchmarks" / "results" / f"data_scaling_{args.preset}.json"
    dest.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
