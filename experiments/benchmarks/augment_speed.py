"""Augmentation service throughput, scaling and memory, against a bare loop in the same run.

    python experiments/benchmarks/augment_speed.py [--clips 192] [--separators 2] [--batch 8]

0. separator work: seconds of audio separated per view and views/s of the bare loop, for the
   augmenter ("separate once": only drawn separators, on the drawn spans) and for the old
   behaviour kept here only (`EverySeparatorWholeClip`: every separator on every whole clip,
   views cut afterwards); and how closely a span's separation matches the whole clip's in
   the crop (SI-SNR of span vs. whole-clip channels; `--registry` for trained separators);
1. views/s: the actor pool (1 actor, 1 torch thread) vs. a bare in-process loop calling the
   same SeparationAugmenter on the same clips, batch size and threads (the baseline);
2. scaling: the pool with 1 and with 2 actors (this box has 2 cores);
3. memory: peak RSS of the driver and of all Ray worker processes while streaming N and
   10 x N synthetic clips through the whole pipeline (generate -> separate -> views): flat
   when nothing is materialised.
Quick-size separators with random weights (speed does not depend on training). Prints one
JSON line and writes results/augment_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

from sslsep.config import load_config, replace, to_dict  # noqa: E402
from sslsep.data.sources import iter_clips  # noqa: E402
from sslsep.views.service import SeparationAugmenter, view_dataset  # noqa: E402
from sslsep.views.builders import ViewDraw  # noqa: E402
from sslsep.separation.metrics import si_snr  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_speed import random_registry  # noqa: E402


class PeakRSS:
    """Samples the RSS of this process and of every Ray worker process every 0.2 s."""

    def __init__(self):
        self.driver = self.workers = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            self.driver = max(self.driver, me.memory_info().rss)
            total = 0
            for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if p.pid != me.pid and ("ray::" in (p.info["name"] or "") or "ray::" in cmd) and p.info["memory_info"]:
                    total += p.info["memory_info"].rss
            self.workers = max(self.workers, total)
            time.sleep(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


class EverySeparatorWholeClip(SeparationAugmenter):
    """The augmenter before "separate once" (the baseline): every separator on every whole
    clip of the batch, the views' crops cut from that."""

    def separate_views(self, x: torch.Tensor, draws: list[list[ViewDraw]]):
        whole = {name: self.run_separator(name, x) for name in self.names}  # name -> (B, M, T)
        return [[whole[d.separator][i][:, d.offset:d.offset + self.crop_len] if d.separator else None
                 for d in clip_draws] for i, clip_draws in enumerate(draws)]


def separator_work(registry: str, cfg, batches: list[dict]) -> dict:
    """Separated seconds per view and bare-loop views/s, new vs. old, on the same batches; and
    the agreement of span and whole-clip separation on the channels that carry sound."""
    out = {}
    views = sum(len(b["clip_id"]) for b in batches) * cfg.augment.views_per_clip
    for arm, cls in (("separate_once", SeparationAugmenter), ("every_separator_whole_clip", EverySeparatorWholeClip)):
        aug = cls(registry, to_dict(cfg))
        aug(batches[0])  # warm-up
        aug.counts = {n: dict.fromkeys(c, 0) for n, c in aug.counts.items()}
        t0 = time.perf_counter()
        for b in batches:
            aug(b)
        out[arm] = {"views_per_s": round(views / (time.perf_counter() - t0), 1),
                    "separated_s_per_view": round(sum(c["separated_s"] for c in aug.counts.values()) / views, 3),
                    "separator_calls": sum(c["calls"] for c in aug.counts.values())}
    new, old = SeparationAugmenter(registry, to_dict(cfg)), EverySeparatorWholeClip(registry, to_dict(cfg))
    agree = []
    for b in batches[:8]:
        x = torch.from_numpy(b["audio"])
        draws = [[ViewDraw("channel", name, int(o)) for name in new.names]
                 for o in np.random.default_rng(0).integers(0, x.shape[1] - new.crop_len + 1, len(b["audio"]))]
        for spans, wholes, clip in zip(new.separate_views(x, draws), old.separate_views(x, draws), b["audio"]):
            for d, s, w in zip(draws[0], spans, wholes):
                mix = clip[d.offset:d.offset + new.crop_len]
                loud = (w ** 2).mean(-1) > 1e-3 * (mix ** 2).mean()  # channels within 30 dB of the mixture
                agree += si_snr(torch.from_numpy(s[loud]), torch.from_numpy(w[loud])).tolist()
    out["span_vs_whole_clip_si_snr_db"] = {"median": round(float(np.median(agree)), 1),
                                           "p10": round(float(np.percentile(agree, 10)), 1),
                                           "min": round(float(np.min(agree)), 1), "channels": len(agree)}
    out["ratio_separated_s_new_over_old"] = round(out["separate_once"]["separated_s_per_view"]
                                                  / out["every_separator_whole_clip"]["separated_s_per_view"], 3)
    out["ratio_views_per_s_new_over_old"] = round(out["separate_once"]["views_per_s"]
                                                  / out["every_separator_whole_clip"]["views_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=192)
    ap.add_argument("--separators", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--work-only", action="store_true", help="part 0 only (separator work and agreement)")
    ap.add_argument("--registry", default="", help="trained separators (default: quick size, random weights)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sets = [f"data.synth.num_clips={args.clips}", f"augment.batch_size={args.batch}",
            f"augment.views_per_clip={args.views}", "augment.torch_threads=1",
            "augment.cpus_per_actor=0.5"]  # logical: leaves CPU for the read step beside 2 actors
    cfg = load_config(None, sets)
    registry = args.registry or random_registry(cfg, args.separators)
    clips = [{"clip_id": r["clip_id"], "audio": r["audio"], "labels": r["labels"]}
             for r in iter_clips(cfg.data, cfg.audio)]

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    # 1. the bare loop: the same callable, batches and threads, in this process (its metrics
    # objects need a Ray session, which is why Ray starts first)
    aug = SeparationAugmenter(registry, to_dict(cfg))
    batches = [{"clip_id": np.array([c["clip_id"] for c in clips[i:i + args.batch]]),
                "audio": np.stack([c["audio"] for c in clips[i:i + args.batch]])}
               for i in range(0, len(clips), args.batch)]
    work = separator_work(registry, cfg, batches)
    if args.work_only:
        print(json.dumps({"benchmark": "augment_speed", "registry": args.registry or "random weights",
                          "views_per_clip": args.views, "separator_work": work}))
        ray.shutdown()
        return
    aug(batches[0])  # warm-up
    t0 = time.perf_counter()
    for b in batches:
        aug(b)
    bare = len(clips) * args.views / (time.perf_counter() - t0)

    def pool(actors: int) -> float:
        c = replace(load_config(None, sets + [f"augment.min_actors={actors}", f"augment.max_actors={actors}"]),
                    {"separation.registry": registry}, origin="benchmark")
        source = ray.data.from_items(clips, override_num_blocks=len(batches)).materialize()
        view_dataset(c, clips=source).materialize()  # warm-up: actor start, model load
        t = time.perf_counter()
        n = sum(len(b["clip_id"]) for b in view_dataset(c, clips=source).iter_batches(batch_size=args.batch))
        assert n == len(clips)
        return n * args.views / (time.perf_counter() - t)

    one, two = pool(1), pool(2)

    def streamed_peak(n: int) -> dict:
        c = replace(load_config(None, sets + [f"data.synth.num_clips={n}"]), {"separation.registry": registry},
                    origin="benchmark")
        with PeakRSS() as rss:
            t = time.perf_counter()
            count = sum(len(b["clip_id"]) for b in view_dataset(c).iter_batches(batch_size=64))
            wall = time.perf_counter() - t
        assert count == n
        return {"clips": n, "driver_peak_mb": round(rss.driver / 2**20), "workers_peak_mb": round(rss.workers / 2**20),
                "views_per_s": round(n * args.views / wall, 1)}

    small, large = streamed_peak(args.clips), streamed_peak(10 * args.clips)
    result = {
        "benchmark": "augment_speed",
        "registry": args.registry or f"{args.separators} x quick, random weights",
        "batch": args.batch, "views_per_clip": args.views,
        "clip_seconds": cfg.audio.clip_seconds, "crop_seconds": cfg.augment.crop_seconds,
        "bare_loop_views_per_s": round(bare, 1), "pool_1_actor_views_per_s": round(one, 1),
        "ratio_pool_over_bare": round(one / bare, 2), "separator_work": work,
        "pool_2_actors_views_per_s": round(two, 1), "scaling_2_over_1": round(two / one, 2),
        "memory_streaming": {"n": small, "10n": large,
                             "workers_ratio_10n_over_n": round(large["workers_peak_mb"] / small["workers_peak_mb"], 2),
                             "driver_ratio_10n_over_n": round(large["driver_peak_mb"] / small["driver_peak_mb"], 2)},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "ray": ray.__version__, "device": "cpu"},
    }
    ray.shutdown()
    line = json.dumps(result)
    print(line)
    (REPO / "experiments" / "benchmarks" / "results" / "augment_speed.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
