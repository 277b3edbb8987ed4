"""GPU figures of the model code at the audioset_gpu preset, on a bare CUDA machine.

    python experiments/benchmarks/gpu.py                 # CUDA: the audioset_gpu sizes, < 8 minutes
    python experiments/benchmarks/gpu.py --size tiny     # CPU smoke size (the tests run it)

Needs torch and torchaudio only: no Ray, no install of the project (the repo's models are
imported from this checkout), no data (inputs are made here: noise bursts, seeded). Measures,
each in fp32 and bf16 autocast (and the encoder also with channels_last):
- separator inference (the augmentation service's call): real-time factor, audio seconds
  separated per wall second, on `augment.batch_size` spans of crop + 2 x context;
- separator training (MixIT, `separation.batch_clips` clips of `audio.clip_seconds`): steps/s;
- encoder training (NT-Xent + coincidence on `pretrain.batch_clips` clips x 2 views): steps/s;
- the largest batch that fits for both training steps (doubling until out of memory; CUDA only);
- from those: how many separator GPUs one training GPU needs at the preset (the separator audio
  one training step consumes: clips x views x share of separated view kinds x span seconds).
Prints one JSON line; writes results/gpu_<device>.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sslsep.contrastive.encoder import build_encoder  # noqa: E402
from sslsep.contrastive.losses import (CoincidenceHead, coincidence_loss, coincidence_pairs,  # noqa: E402
                                       multiview_nt_xent)
from sslsep.separation.mixit import mixit_loss, mixture_of_mixtures  # noqa: E402
from sslsep.separation.model import build_separator  # noqa: E402

RATE = 16000
# The audioset_gpu preset (experiments/configs/audioset_gpu.yaml) and a CPU smoke size.
SIZES = {
    "full": dict(separator="paper", encoder="resnet", embed_dim=512, clip_s=10.0, crop_s=2.0, context_s=0.5,
                 sep_batch=4, aug_batch=32, pre_batch=128, views=2, separated_share=2 / 3, steps=10, warmup=3,
                 max_batch=4096),
    # the laptop preset (experiments/configs/quick.yaml): what compute_efficiency.py measures on CPU
    "quick": dict(separator="quick", encoder="compact", embed_dim=128, clip_s=4.0, crop_s=2.0, context_s=0.5,
                  sep_batch=8, aug_batch=8, pre_batch=16, views=2, separated_share=2 / 3, steps=5, warmup=2,
                  max_batch=0),
    "tiny": dict(separator="quick", encoder="compact", embed_dim=64, clip_s=1.0, crop_s=0.5, context_s=0.1,
                 sep_batch=2, aug_batch=2, pre_batch=4, views=2, separated_share=2 / 3, steps=2, warmup=1,
                 max_batch=0),
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def clips(n: int, seconds: float, device: str, seed: int = 0) -> torch.Tensor:
    """(n, T) noise bursts with silent gaps: something to separate, made here."""
    g = torch.Generator().manual_seed(seed)
    T = int(seconds * RATE)
    x = torch.randn(n, T, generator=g) * (torch.rand(n, 1, T // 400 + 1, generator=g) > 0.5).float(
    ).repeat_interleave(400, dim=-1)[..., :T].squeeze(1)
    return (0.1 * x).to(device)  # (n, T)


def timed(fn, steps: int, warmup: int, device: str) -> float:
    """Calls per second of `fn` after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return steps / (time.perf_counter() - t0)


def autocast(device: str, dtype: str):
    return torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bf16")


def separator_inference(s: dict, device: str, dtype: str) -> float:
    """Audio seconds separated per wall second (the real-time factor, x real time)."""
    model = build_separator(s["separator"]).to(device).eval()
    span = s["crop_s"] + 2 * s["context_s"]
    x = clips(s["aug_batch"], span, device)

    def call():
        with torch.inference_mode(), autocast(device, dtype):
            model(x)
    return timed(call, s["steps"], s["warmup"], device) * s["aug_batch"] * span


def separator_step(s: dict, device: str, dtype: str, batch: int):
    model = build_separator(s["separator"]).to(device).train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = clips(batch, s["clip_s"], device)

    def step():
        mom, mixtures = mixture_of_mixtures(x)  # (B/2, T), (B/2, 2, T)
        with autocast(device, dtype):
            est = model(mom)  # (B/2, M, T)
        loss, _ = mixit_loss(est.float(), mixtures)  # (B/2,)
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        opt.step()
    return step


def encoder_step(s: dict, device: str, dtype: str, batch: int, channels_last: bool = False):
    enc = build_encoder(s["encoder"], embed_dim=s["embed_dim"], proj_dim=128).to(device).train()
    head = CoincidenceHead(enc.embed_dim).to(device)
    if channels_last:
        enc = enc.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), 1e-3)
    V = s["views"]
    views = clips(batch * V, s["crop_s"], device, seed=1)  # (B*V, T)
    g = torch.Generator().manual_seed(0)

    def step():
        with autocast(device, dtype):
            e = enc.embed(views)  # (B*V, D)
            z = enc.head(e).view(batch, V, -1)  # (B, V, P)
            i1, i2, target = (t.to(device) for t in coincidence_pairs(batch, V, g))
            logits = head(e[i1], e[i2])  # (P,)
        loss = multiview_nt_xent(z.float()).mean() + coincidence_loss(logits.float(), target).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def largest_batch(make, start: int, limit: int, device: str, deadline: float) -> int | None:
    """The largest power-of-two multiple of `start` whose training step runs (CUDA only)."""
    if device != "cuda" or not limit:
        return None
    ok, b = None, start
    while b <= limit and time.monotonic() < deadline:
        try:
            step = make(b)
            step()
            step()
            sync(device)
            ok = b
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            step = None
            torch.cuda.empty_cache()
        b *= 2
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="full")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop searching batch sizes after this")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    s, dev = SIZES[args.size], args.device
    t_start = time.monotonic()
    torch.backends.cudnn.benchmark = True
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here; bf16 is measured on its own
        torch.backends.cudnn.allow_tf32 = False
    out: dict = {"benchmark": "gpu", "size": args.size, "device": dev,
                 "device_name": torch.cuda.get_device_name() if dev == "cuda" else platform.processor(),
                 "torch": torch.__version__, "preset": {k: v for k, v in s.items() if k not in ("steps", "warmup")}}
    for dtype in ("fp32", "bf16"):
        out[f"separator_rtf_{dtype}"] = round(separator_inference(s, dev, dtype), 1)
        out[f"separator_train_steps_s_{dtype}"] = round(
            timed(separator_step(s, dev, dtype, s["sep_batch"]), s["steps"], s["warmup"], dev), 3)
        out[f"encoder_train_steps_s_{dtype}"] = round(
            timed(encoder_step(s, dev, dtype, s["pre_batch"]), s["steps"], s["warmup"], dev), 3)
    out["encoder_train_steps_s_bf16_channels_last"] = round(
        timed(encoder_step(s, dev, "bf16", s["pre_batch"], True), s["steps"], s["warmup"], dev), 3)
    deadline = t_start + args.budget_s
    out["encoder_largest_batch_bf16"] = largest_batch(lambda b: encoder_step(s, dev, "bf16", b), s["pre_batch"],
                                                      s["max_batch"], dev, deadline)
    out["separator_largest_batch_bf16"] = largest_batch(lambda b: separator_step(s, dev, "bf16", b), s["sep_batch"],
                                                        s["max_batch"], dev, deadline)
    # separator audio one second of encoder training consumes, over what one separator GPU gives
    span = s["crop_s"] + 2 * s["context_s"]
    best = max(out["encoder_train_steps_s_bf16"], out["encoder_train_steps_s_bf16_channels_last"])
    need = best * s["pre_batch"] * s["views"] * s["separated_share"] * span  # audio s to separate per s
    out["separator_audio_s_per_train_s"] = round(need, 1)
    out["separator_gpus_per_train_gpu"] = round(need / out["separator_rtf_bf16"], 2)
    out["wall_s"] = round(time.monotonic() - t_start, 1)
    line = json.dumps(out)
    print(line)
    dest = Path(args.out) if args.out else REPO / "experiments" / "benchmarks" / "results" / f"gpu_{dev}_{args.size}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(line + "\n")


if __name__ == "__main__":
    main()
