"""Separator inference speed (real-time factor) and the quick-size front-end trial.

Speed (default): RTF = seconds of audio separated per wall second, for the "quick" and
"paper" sizes and for a trivial STFT-mask reference (STFT -> one 1x1 conv -> sigmoid masks
-> iSTFT) measured in the same run; each size is also reported relative to that
reference (``rel_to_stft_ref`` = size RTF / reference RTF). CPU runs use 2 torch threads;
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


def measure_rtf(model: nn.Module, x: torch.Tensor, autocast: bool = False,
                min_seconds: float = 3.0, max_reps: int = 20) -> dict:
    """Median-free simple timing: one warm-up, then reps until min_seconds elapsed."""
    dev = x.device
    ctx = (torch.autocast(dev.type, dtype=torch.bfloat16) if autocast
           else torch.autocast(dev.type, enabled=False))

    def once():
        with torch.inference_mode(), ctx:
            model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    once()
    reps, start = 0, time.perf_counter()
    while reps < max_reps and (reps == 0 or time.perf_counter() - start < min_seconds):
        once()
        reps += 1
    per_call = (time.perf_counter() - start) / reps
    audio_s = x.shape[0] * x.shape[1] / SR
    return {"rtf": round(audio_s / per_call, 2), "seconds_per_batch": round(per_call, 4), "reps": reps}


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "device": device,
            "device_name": platform.processor() or platform.machine()}
    if device == "cuda":
        info["device_name"] = torch.cuda.get_device_name(0)
    return info


def run_speed(device: str, seconds: float, batch: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch, int(seconds * SR), device=device) * 0.1
    models = {"stft_ref": STFTMaskReference(), "quick": build_separator("quick"),
              "paper": build_separator("paper")}
    precisions = ["fp32"] + (["bf16"] if device == "cuda" else [])
    out: dict = {"bench": "separator_speed", "batch": batch, "seconds": seconds, "results": {}}
    for name, model in models.items():
        model = model.to(device).eval()
        params = sum(p.numel() for p in model.parameters())
        for prec in precisions:
            r = measure_rtf(model, x, autocast=prec == "bf16")
            out["results"][f"{name}/{prec}"] = {"params": params, **r}
    for key, r in out["results"].items():
        ref = out["results"][f"stft_ref/{key.split('/')[1]}"]["rtf"]
        r["rel_to_stft_ref"] = round(r["rtf"] / ref, 4)
    q, p = out["results"]["quick/fp32"]["rtf"], out["results"]["paper/fp32"]["rtf"]
    out["quick_over_paper_fp32"] = round(q / p, 2)
    out["machine"] = machine_info(device)
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


def run_trial(budget_s: float, seconds: float, batch: int) -> dict:
    T = int(seconds * SR)
    g = torch.Generator().manual_seed(123)
    ev_mom, _, ev_src = synth_mom(16, T, g)
    results = {}
    for name, overrides in TRIAL_CANDIDATES.items():
        torch.manual_seed(0)
        gt = torch.Generator().manual_seed(7)  # same training data stream for every candidate
        model = build_separator("quick", **overrides)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        steps, losses, elapsed = 0, [], 0.0
        while elapsed < budget_s:  # budget counts model steps only, not data synthesis
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
            "seconds": seconds, "results": results, "machine": machine_info("cpu")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--trial", action="store_true", help="run the quick-size front-end trial")
    ap.add_argument("--budget", type=float, default=150.0, help="trial: seconds per candidate")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but torch.cuda.is_available() is False")
    if args.trial:
        out, tag = run_trial(args.budget, args.seconds, args.batch), "trial_cpu"
    else:
        out, tag = run_speed(args.device, args.seconds, args.batch), args.device
    line = json.dumps(out, sort_keys=True)
    print(line)
    res_dir = Path(__file__).resolve().parent / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    name = "separator_quick_trial.json" if args.trial else f"separator_speed_{tag}.json"
    (res_dir / name).write_text(line + "\n")


if __name__ == "__main__":
    main()
