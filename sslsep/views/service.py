"""The separation augmentation service: a Ray Data actor pool that turns clips into views.

    clips (tasks: read, decode, crop) -> map_batches(SeparationAugmenter, ActorPoolStrategy)
        -> rows {clip_id, views f32[V, crop], view_kind[V], view_separator[V], view_channels[V], labels}

Each actor loads its K separators once (local or s3:// registry), runs them batched on its
device (a GPU share when it has one) and builds each clip's views with the pure functions
of sslsep.views.builders. Actors that die are restarted by Ray Data and their batches
retried; views are seeded by clip id, so a retry reproduces them exactly.
Metrics (ray.util.metrics, exported to the Ray dashboard / Prometheus):
sslsep_views_total, sslsep_clips_total, sslsep_separator_latency_s, sslsep_augmenter_idle_s.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import torch

from sslsep.checkpoint import load_module
from sslsep.config import ExperimentConfig, from_dict, to_dict
from sslsep.data.sources import object_column
from sslsep.separation.model import Separator
from sslsep.separation.registry import read_registry, select
from sslsep.views.builders import active_channels, plan_views, render_views

VIEW_COLUMNS = ("clip_id", "views", "view_kind", "view_separator", "view_channels", "labels")


def load_separators(registry_uri: str, wanted: list[str], device: str = "cpu") -> dict[str, Separator]:
    """Registry entries -> {name: Separator in eval mode}; a bad checkpoint names its file."""
    entries = select(read_registry(registry_uri), [int(w) if str(w).isdigit() else w for w in wanted])
    models = {}
    for e in entries:
        try:
            models[e["name"]] = load_module(Separator, e["uri"], device)
        except Exception as err:
            raise ValueError(f"separator {e['name']!r} ({e['uri']}) does not load: {err}") from None
    return models


def _seed(clip_id: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(clip_id.encode())])


def _in_ray() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except ImportError:
        return False


class _ServiceMetrics:
    """ray.util.metrics, exported by every node's metrics agent to Prometheus/Grafana."""

    def __init__(self):
        from ray.util import metrics

        self.views = metrics.Counter("sslsep_views_total", "views produced by the augmentation service")
        self.clips = metrics.Counter("sslsep_clips_total", "clips turned into views")
        self.latency = metrics.Histogram("sslsep_separator_latency_s", "separator forward time per batch",
                                         boundaries=[0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30])
        self.idle = metrics.Histogram("sslsep_augmenter_idle_s", "time an actor waited for its next batch "
                                      "(its input queue was empty)", boundaries=[0.001, 0.01, 0.1, 1, 10, 100])


class SeparationAugmenter:
    """Callable class for Dataset.map_batches: clip batch -> view batch (one row per clip)."""

    def __init__(self, registry: str, cfg: dict):
        self.cfg: ExperimentConfig = from_dict(cfg, "augmenter config")
        aug = self.cfg.augment
        torch.set_num_threads(aug.torch_threads)
        self.device = "cuda" if torch.cuda.is_available() and aug.gpus_per_actor > 0 else "cpu"
        # mixture-only views (the no-separation control) need no separator at all
        self.models = {} if aug.kinds == ["mixture"] else load_separators(registry, aug.separators, self.device)
        self.crop_len = int(round(min(aug.crop_seconds, self.cfg.audio.clip_seconds) * self.cfg.audio.sample_rate))
        self._last_return = None
        self.metrics = _ServiceMetrics() if _in_ray() else None  # in-process use has no exporter

    @torch.inference_mode()
    def separate(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """(B, T) -> {name: (B, M, T)}."""
        x = torch.from_numpy(np.ascontiguousarray(audio)).to(self.device)
        out = {}
        for name, model in self.models.items():
            out[name] = model(x).float().cpu().numpy()  # (B, M, T)
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        now = time.perf_counter()
        m = self.metrics
        if m and self._last_return is not None:
            m.idle.observe(now - self._last_return)
        aug = self.cfg.augment
        audio = batch["audio"]  # (B, T)
        t0 = time.perf_counter()
        separated = self.separate(audio)
        if m:
            m.latency.observe(time.perf_counter() - t0)
        views, kinds, seps, chans = [], [], [], []
        for i, clip_id in enumerate(batch["clip_id"]):
            sources = {name: est[i] for name, est in separated.items()}  # name -> (M, T)
            active = {name: active_channels(src, audio[i], aug.min_channel_db) for name, src in sources.items()}
            specs = plan_views(_seed(str(clip_id), self.cfg.seed), aug.views_per_clip, aug.kinds, active,
                               audio.shape[1], self.crop_len, aug.same_crop, aug.across_separators,
                               aug.anchor_mixture)
            views.append(render_views(audio[i], sources, specs, self.crop_len))  # (V, crop)
            kinds.append([s.kind for s in specs])
            seps.append([s.separator for s in specs])
            chans.append([s.channels_text for s in specs])
        out = {"clip_id": batch["clip_id"], "views": np.stack(views),  # (B, V, crop)
               "view_kind": object_column(kinds), "view_separator": object_column(seps),
               "view_channels": object_column(chans)}
        if "labels" in batch:
            out["labels"] = batch["labels"]
        n = len(batch["clip_id"])
        if m:
            m.clips.inc(n)
            m.views.inc(n * aug.views_per_clip)
        self._last_return = time.perf_counter()
        return out


def view_dataset(cfg: ExperimentConfig, *, clips=None):
    """clips (default: the configured source's usable clips) -> the streaming view Dataset of
    the separators in `separation.registry`."""
    import ray.data

    from sslsep.data.sources import clip_dataset, usable

    aug, registry = cfg.augment, cfg.separation.registry
    if aug.kinds != ["mixture"]:
        if not registry:
            raise ValueError("views need separators: key 'separation.registry' is empty "
                             "(--registry RUN_DIR/registry.json, or train them first)")
        load_separators(registry, aug.separators)  # fail at start, on the driver, not in a hung pool
    cpus = cfg.data.cpus_per_task  # the same for every task step, so that Ray fuses them
    if clips is None:
        clips = usable(clip_dataset(cfg.data, cfg.audio, shuffle_seed=cfg.seed), cpus)
    clips = clips.select_columns(["clip_id", "audio", "labels"], num_cpus=cpus)
    # Ray Data already restarts dead actors without limit and retries their batches;
    # only a different limit needs passing (through a deprecated hook, hence only then)
    extra = {} if aug.max_restarts == -1 else {"ray_remote_args_fn": lambda: {"max_restarts": aug.max_restarts}}
    return clips.map_batches(
        SeparationAugmenter, fn_constructor_kwargs={"registry": registry, "cfg": to_dict(cfg)},
        batch_size=aug.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=aug.min_actors, max_size=aug.max_actors),
        num_cpus=aug.cpus_per_actor, num_gpus=aug.gpus_per_actor or None, **extra)
