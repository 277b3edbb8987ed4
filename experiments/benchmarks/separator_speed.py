"""Separator inference speed (real-time factor) and the quick-size front-end trial.

Speed (default): RTF = seconds of audio separated per wall second (median over interleaved
rounds), for the "quick" and "paper" sizes and for a trivial STFT-mask reference (STFT ->
one 1x1 conv -> sigmoid masks -> iSTFT) measured in the same run; each size is also
reported relative to that reference (``rel_to_stft_ref`` = size RTF / reference RTF). CPU runs use 2 torch threads;
on CUDA, fp32 and autocast bf16. Prints one JSON line and writes
``experiments/benchmarks/results/separator_speed_<device>.json``.

    PYTHONPATH=. python experiments/benchmarks/separator_speed.py [--device cpu|cuda]
        [--seconds 4] [--batch 4]

Trial (``--trial``): trains candidate quick-size front ends with MixIT for the same wall
budget on mixtures-of-mixtures of synthetic sources (sine sweeps, band-limited noise
bursts, harmonic click trains) and reports held-out multi-source SI-SNRi; its result
chose ``SIZES["quick"]`` (see sslsep/separation/model.py docstring).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from sslsep.separation import (build_separator, mean_valid, mixit_loss, multi_source_si_snri)

SR = 16000


class STFTMaskReference(nn.Module):
    """Trivial baseline: M sigmoid masks from one 1x1 conv on log-magnitude STFT."""

    def __init__(self, n_sources: int = 4, win: int = 512, hop: int = 128):
        super().__init__()
        self.win, self.hop, self.m = win, hop, n_sources
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        self.proj = nn.Conv1d(win // 2 + 1, n_sources * (win // 2 + 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, self.win, self.hop, window=self.window, return_complex=True)  # (B, K, F)
        B, K, Fr = spec.shape
        masks = torch.sigmoid(self.proj(torch.log1p(spec.abs()))).reshape(B, self.m, K, Fr)  # (B, M, K, F)
        y = torch.istft((masks * spec.unsqueeze(1)).reshape(B * self.m, K, Fr), self.win,
                        self.hop, window=self.window, length=x.shape[-1])  # (B*M, T)
        return y.reshape(B, self.m, -1)  # (B, M, T)


def time_call(model: nn.Module, x: torch.Tensor, autocast: bool) -> float:
    """Wall seconds of one inference call (CUDA synchronised)."""
    dev = x.device
    ctx = (torch.autocast(dev.type, dtype=torch.bfloat16) if autocast
           else torch.autocast(dev.type, enabled=False))
    start = time.perf_counter()
    with torch.inference_mode(), ctx:
        model(x)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_interleaved(models: dict, x: torch.Tensor, autocast: bool, rounds: int) -> dict:
    """One warm-up each, then `rounds` rounds calling every model once per round; the median
    per model. Interleaving spreads any load from other processes over all models alike,
    so the ratios between models stay meaningful on a shared machine."""
    for model in models.values():
        time_call(model, x, autocast)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(time_call(model, x, autocast))
    audio_s = x.shape[0] * x.shape[1] / SR
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        # rtf_best (fastest round) is the least disturbed by other load on a shared machine
        out[name] = {"rtf": round(audio_s / med, 2), "rtf_best": round(audio_s / min(ts), 2),
                     "seconds_per_batch": round(med, 4),
                     "min_seconds_per_batch": round(min(ts), 4), "rounds": rounds}
    return out


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "device": device,
            "loadavg_1m": round(os.getloadavg()[0], 2),  # >0 before start = shared machine
            "device_name": platform.processor() or platform.machine()}
    if device == "cuda":
        info["device_name"] = torch.cuda.get_device_name(0)
    return info


def run_speed(device: str, seconds: float, batch: int, rounds: int = 3) -> dict:
    load_before = round(os.getloadavg()[0], 2)
    torch.manual_seed(0)
    x = torch.randn(batch, int(seconds * SR), device=device) * 0.1
    models = {"stft_ref": STFTMaskReference(), "quick": build_separator("quick"),
              "paper": build_separator("paper")}
    precisions = ["fp32"] + (["bf16"] if device == "cuda" else [])
    out: dict = {"bench": "separator_speed", "batch": batch, "seconds": seconds, "results": {}}
    models = {name: m.to(device).eval() for name, m in models.items()}
    for prec in precisions:
        timed = measure_interleaved(models, x, prec == "bf16", rounds)
        for name, r in timed.items():
            params = sum(p.numel() for p in models[name].parameters())
            out["results"][f"{name}/{prec}"] = {"params": params, **r}
    for key, r in out["results"].items():
        ref = out["results"][f"stft_ref/{key.split('/')[1]}"]
        r["rel_to_stft_ref"] = round(r["rtf"] / ref["rtf"], 4)
        r["rel_to_stft_ref_best"] = round(r["rtf_best"] / ref["rtf_best"], 4)
    q, p = out["results"]["quick/fp32"]["rtf"], out["results"]["paper/fp32"]["rtf"]
    out["quick_over_paper_fp32"] = round(q / p, 2)
    out["quick_over_paper_fp32_best"] = round(out["results"]["quick/fp32"]["rtf_best"]
                                              / out["results"]["paper/fp32"]["rtf_best"], 2)
    out["machine"] = {**machine_info(device), "loadavg_1m_before": load_before}
    return out


# ----------------------------------------------------------------------------- trial

def synth_source(T: int, g: torch.Generator) -> torch.Tensor:
    """One random source (T,): exp sine sweep, band-limited noise burst or harmonic clicks."""
    t = torch.arange(T) / SR
    kind = int(torch.randint(3, (1,), generator=g))
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand(1, generator=g))  # noqa: E731
    if kind == 0:
        f0, f1 = u(100, 3000), u(100, 3000)
        freq = f0 * (f1 / f0) ** (t / t[-1])
        s = torch.sin(2 * math.pi * torch.cumsum(freq, 0) / SR + u(0, 6.28))
    elif kind == 1:
        spec = torch.fft.rfft(torch.randn(T, generator=g))
        f = torch.fft.rfftfreq(T, 1 / SR)
        lo = u(50, 5000)
        spec[(f < lo) | (f > lo * u(1.3, 3))] = 0
        s = torch.fft.irfft(spec, T)
    else:
        f0 = u(80, 400)
        s = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 9))
    on, dur = int(u(0, 0.5) * T), int(u(0.3, 1.0) * T)
    env = torch.zeros(T)
    env[on:on + dur] = 1.0
    env = torch.nn.functional.conv1d(env.view(1, 1, -1), torch.ones(1, 1, 161) / 161,
                                     padding=80).view(-1)  # 10 ms fades
    s = s * env
    return s / (s.pow(2).mean().sqrt() + 1e-8) * 10 ** (u(-12, 0) / 20) * 0.1


def synth_mom(n: int, T: int, g: torch.Generator, max_src: int = 2):
    """n MoMs: mom (n, T), mixtures (n, 2, T), sources (n, 2*max_src, T) zero-padded."""
    srcs = torch.zeros(n, 2, max_src, T)
    for i in range(n):
        for j in range(2):
            for k in range(int(torch.randint(1, max_src + 1, (1,), generator=g))):
                srcs[i, j, k] = synth_source(T, g)
    mixtures = srcs.sum(2)  # (n, 2, T)
    return mixtures.sum(1), mixtures, srcs.reshape(n, 2 * max_src, T)


TRIAL_CANDIDATES = {
    "stft_32ms_8ms": dict(front_end="stft", window_ms=32.0, hop_ms=8.0),
    "learned64_5ms": dict(front_end="learned", n_basis=64, window_ms=5.0),
    "learned64_2.5ms": dict(front_end="learned", n_basis=64, window_ms=2.5),
    "learned128_10ms": dict(front_end="learned", n_basis=128, window_ms=10.0),
    "stft_32ms_8ms_complex": dict(front_end="stft", window_ms=32.0, hop_ms=8.0,
                                  stft_features="complex"),
}


def run_trial(budget_s: float, seconds: float, batch: int, seed: int = 0,
              steps_cap: int = 0, names: list[str] | None = None) -> dict:
    """Train each candidate for budget_s seconds of model steps (or exactly steps_cap steps,
    which is robust to a busy machine when candidates cost the same per step)."""
    T = int(seconds * SR)
    g = torch.Generator().manual_seed(123 + seed)
    ev_mom, _, ev_src = synth_mom(16, T, g)
    results = {}
    for name in names or list(TRIAL_CANDIDATES):
        overrides = TRIAL_CANDIDATES[name]
        torch.manual_seed(seed)
        gt = torch.Generator().manual_seed(7 + seed)  # same training data for every candidate
        model = build_separator("quick", **overrides)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps, losses, elapsed = 0, [], 0.0
        while (steps < steps_cap) if steps_cap else (elapsed < budget_s):  # excl. data synthesis
            mom, mixtures, _ = synth_mom(batch, T, gt)
            start = time.perf_counter()
            loss, _ = mixit_loss(model(mom), mixtures)
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            elapsed += time.perf_counter() - start
            steps, losses = steps + 1, losses + [loss.mean().item()]
        model.eval()
        with torch.no_grad():
            sisnri = mean_valid(multi_source_si_snri(model(ev_mom), ev_src, ev_mom)).item()
        results[name] = {"steps": steps, "sisnri_db": round(sisnri, 2),
                         "ms_per_step": round(1000 * elapsed / steps, 1),
                         "final_train_loss": round(sum(losses[-10:]) / len(losses[-10:]), 2)}
        print(name, results[name], file=sys.stderr, flush=True)
    return {"bench": "separator_quick_trial", "budget_s": budget_s, "batch": batch,
            "seconds": seconds, "seed": seed, "steps_cap": steps_cap, "results": results,
            "machine": machine_info("cpu")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--rounds", type=int, default=5, help="timed calls per model (median)")
    ap.add_argument("--trial", action="store_true", help="run the quick-size front-end trial")
    ap.add_argument("--budget", type=float, default=100.0, help="trial: seconds per candidate")
    ap.add_argument("--steps", type=int, default=0, help="trial: fixed steps instead of --budget")
    ap.add_argument("--seed", type=int, default=0, help="trial: model/data seed")
    ap.add_argument("--candidates", nargs="*", choices=sorted(TRIAL_CANDIDATES), help="trial subset")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but torch.cuda.is_available() is False")
    if args.trial:
        out, tag = run_trial(args.budget, args.seconds, args.batch, args.seed, args.steps,
                             args.candidates), "trial_cpu"
    else:
        out, tag = run_speed(args.device, args.seconds, args.batch, args.rounds), args.device
    line = json.dumps(out, sort_keys=True)
    print(line)
    res_dir = Path(__file__).resolve().parent / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    seed_tag = f"_seed{args.seed}" if args.seed else ""
    name = (f"separator_quick_trial{seed_tag}.json" if args.trial
            else f"separator_speed_{tag}.json")
    (res_dir / name).write_text(line + "\n")


if __name__ == "__main__":
    main()
