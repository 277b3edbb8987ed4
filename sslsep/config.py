"""Typed configuration: one dataclass per pipeline stage, nested in one ExperimentConfig.

All defaults live here. A config is built from (in order) the dataclass defaults, an
optional YAML file, repeated ``--set dotted.key=value`` overrides and ``--data``.
Loading is strict: unknown keys, wrong types and out-of-range values raise
:class:`ConfigError` naming the key and where it came from (file or ``--set``), and every
rule that relates two keys (`_validate`) is checked then, before any stage runs.

``key=value`` strings exist only at the command line (and in sweep files, parsed where they
are read). Code changes a config with values: ``replace(cfg, {"separation.registry": uri})``
returns a new config, checked as strictly as a loaded one, with no YAML parsing of the values.

Range rules sit next to each field (``metadata={"min": .., "max": .., "choices": ..}``)
so that a reader sees the default and its limits in one place.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@functools.cache
def _loader():
    """YAML 1.1 reads 1e-3 as a string (it wants 1.0e-3); people write 1e-3. Built on first
    use: the model code that imports this module runs without PyYAML (gpu.py)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def _yaml(text: str):
    import yaml

    return yaml.load(text, Loader=_loader())


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


def _f(default: Any, *, min: float | None = None, max: float | None = None,
       choices: tuple | None = None, help: str = "") -> Any:
    meta = {"min": min, "max": max, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# Shared by every training stage (sslsep.training): the loop reads them the same way.
LR_SCHEDULES = ("constant", "cosine")
LR_SCHEDULE_HELP = "constant, or cosine decay to 0 at `steps` (both after `warmup_steps` of linear warm-up)"
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
PRECISION_HELP = ("autocast dtype of the forward pass: fp32 (off), bf16 (CPU and CUDA; the GPU preset's), "
                  "fp16 (CUDA, with a gradient scaler), auto (bf16 where the device computes it natively: "
                  "CUDA with bf16, a CPU with AVX512-BF16 or AMX; else fp32)")

VAL_SEED_OFFSET = 1_000_003  # synthetic data: separation validates on scenes of data.synth.seed + this
MAX_FRAME_HOP_S = 0.05  # HEAR: the encoder's timestamp embeddings are at most 50 ms apart


@dataclass
class AudioConfig:
    """Decoding and front end: every clip becomes mono float32 at `sample_rate`."""
    sample_rate: int = _f(16000, min=4000, max=96000, help="target rate; other rates are resampled")
    clip_seconds: float = _f(4.0, min=0.1, max=600.0, help="fixed clip length after crop/pad")
    crop: str = _f("start", choices=("start", "center", "random"),
                   help="where a longer clip is cut; random is seeded by clip id")
    silence_dbfs: float = _f(-60.0, max=0.0, help="clips whose RMS is below this are flagged silent")
    n_mels: int = _f(64, min=8, max=512)
    win_ms: float = _f(25.0, min=1.0, max=200.0)
    hop_ms: float = _f(10.0, min=1.0, max=100.0)
    f_min: float = _f(60.0, min=0.0)
    f_max: float = _f(7800.0, min=100.0, help="clamped to sample_rate / 2")

    @property
    def num_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))


@dataclass
class SynthConfig:
    """The embedded synthetic sound scenes (sslsep.data.synthetic)."""
    num_clips: int = _f(2000, min=1, help="clips in the training stream")
    seed: int = _f(0, min=0)
    min_events: int = _f(1, min=1, max=4)
    max_events: int = _f(4, min=1, max=7, help="at most the smallest scene context (7 classes)")
    gain_db: list[float] = _f([-12.0, 0.0], help="per-event gain range [low, high] in dB")


SOURCE_KINDS = ("auto", "synthetic", "folder", "parquet")


@dataclass
class SourceConfig:
    """One corpus of a run that reads several (`data.sources`): the mix is streamed as one
    (sslsep.data.sources.MixSource); each entry is also an evaluation task when it has labels."""
    path: str = _f("", help="folder or shard prefix, local or s3://; '' = the synthetic scenes (data.synth)")
    kind: str = _f("auto", choices=SOURCE_KINDS, help="as data.source")
    name: str = _f("", help="what reports, accounting and the task call it; '' = the folder's name "
                   "(or 'synthetic')")
    weight: float = _f(1.0, min=0.01, max=100.0, help="passes over this source per pass over the mix: 1 = each "
                       "clip once, 2 = twice, 0.5 = half its clips (another half the next pass)")
    labels_csv: str = _f("", help="as data.labels_csv, for this source")
    class_index_csv: str = _f("", help="as data.class_index_csv, for this source")
    max_clips: int = _f(0, min=0, help="as data.max_clips, for this source")


@dataclass
class DataConfig:
    """Where clips come from: one source (`source`, `path`, ...), or several (`sources`; then
    `path` stays empty). `source` auto picks from `path`: empty -> synthetic, a folder of
    .parquet shards -> parquet, any other folder -> folder."""
    source: str = _f("auto", choices=SOURCE_KINDS)
    path: str = _f("", help="folder or shard prefix, local or s3://")
    labels_csv: str = _f("", help="labels CSV; default: metadata.csv / labels.csv / *segments*.csv in the folder")
    class_index_csv: str = _f("", help="AudioSet class_labels_indices.csv (mid -> display name)")
    extensions: list[str] = _f([".wav", ".flac", ".ogg"])
    max_clips: int = _f(0, min=0, help="0 = all; otherwise the first N clips in sorted order")
    shard_clips: int = _f(256, min=1, help="clips per Parquet shard written by `sslsep data pack`")
    preserve_order: bool = _f(True, help="Ray Data hands rows on in a fixed order, so the same config and seed "
                              "give the same batches and results; false lets fast tasks overtake slow ones "
                              "(more throughput on big clusters, runs no longer repeat to the digit)")
    stream_memory_mb: float = _f(512.0, min=0.0, help="object-store memory a Ray Data pipeline started here may "
                                 "hold ahead of its consumer (0 = Ray's default share): bounds how far decoding "
                                 "and separation run ahead of training, and so the work a finished run leaves unused")
    loop_period_ms: float = _f(20.0, min=0.0, help="each turn of a stream's scheduling loop lasts at least this "
                               "long (sslsep.data.pacing): a stream held back by its consumer no longer spins a "
                               "core; 0 = Ray Data's own loop")
    cpus_per_task: float = _f(0.5, min=0.01, help="CPUs Ray reserves per read/decode task; below 1 so "
                              "decoding still schedules next to trainers and actors that hold whole CPUs")
    check: str = _f("sample", choices=("sample", "full"), help="the joint job's data stage: sample = decode "
                    "`check_clips` clips in hash order of their ids (a pre-flight: start-up independent of the corpus "
                    "size; the whole corpus when it is smaller), full = stream and decode every clip once")
    check_clips: int = _f(2000, min=1, help="clips the sampled data check decodes")
    sources: list[SourceConfig] = _f([], help="several corpora in one stream (`--data` given more than once); "
                                     "[] = the one source of `source` / `path`")
    synth: SynthConfig = field(default_factory=SynthConfig)


def source_entries(data: DataConfig) -> list[tuple[str, float, DataConfig]]:
    """The run's sources as (name, weight, a one-source DataConfig) each: the entries of
    `data.sources`, or the one source of `data.path` (weight 1). Names are unique (a rule of
    the config)."""
    if not data.sources:
        return [(source_name(data.path, data.source), 1.0, data)]
    return [(entry.name or source_name(entry.path, entry.kind), entry.weight, one_source(data, entry))
            for entry in data.sources]


def one_source(data: DataConfig, entry) -> DataConfig:
    """`data` (its decoding settings) reading the one source of `entry` (a SourceConfig or a
    TaskConfig: path, kind, labels_csv, class_index_csv, max_clips)."""
    one = copy.deepcopy(data)
    one.sources = []
    one.source, one.path, one.labels_csv = entry.kind, entry.path, entry.labels_csv
    one.class_index_csv, one.max_clips = entry.class_index_csv, entry.max_clips
    return one


def source_name(path: str, kind: str = "auto") -> str:
    """The default name of a source: its folder's (or shard file's) name, or 'synthetic'."""
    if not path or kind == "synthetic":
        return "synthetic"
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name[:-len(".parquet")] if name.endswith(".parquet") else name


@dataclass
class TrainingConfig:
    """What the shared step loop and launcher read (sslsep.training), the same keys in both
    training stages; each stage sets its own defaults for steps, grad_clip, checkpoint_steps."""
    steps: int = _f(1000, min=1)
    lr: float = _f(1e-3, min=0.0)
    lr_schedule: str = _f("constant", choices=LR_SCHEDULES, help=LR_SCHEDULE_HELP)
    warmup_steps: int = _f(0, min=0, help="steps of linear learning-rate warm-up from 0")
    precision: str = _f("fp32", choices=PRECISIONS, help=PRECISION_HELP)
    grad_clip: float = _f(0.0, min=0.0, help="max gradient norm; 0 = off")
    max_minutes: float = _f(0.0, min=0.0, help="wall-clock guard; 0 = none (steps bound the run; a cut is reported)")
    checkpoint_steps: list[int] = _f([], min=1, help="steps kept for good (and the last step)")
    num_workers: int = _f(1, min=1, help="Ray Train workers (DDP ranks)")
    min_workers: int = _f(0, min=0, help="when the cluster cannot hold num_workers (a node lost, none to replace "
                          "it) for node_wait_s, go on with as many as it holds, down to this (0 = num_workers: "
                          "never fewer; stop with a resumable checkpoint instead)")
    node_wait_s: float = _f(600.0, min=0.0, help="how long an attempt waits for nodes that offer its workers' "
                            "resources before going on with fewer (min_workers) or stopping")
    use_gpu: bool = _f(False, help="one GPU per worker")
    cpus_per_worker: float = _f(1.0, min=0.0)
    torch_threads: int = _f(0, min=0, help="0 = max(1, cpus_per_worker)")
    use_ray: bool = _f(True, help="false: the same loop in this process (world size 1)")
    resources: dict[str, float] = _f({}, help="custom Ray resources each worker also holds, e.g. {trainer_node: "
                                     "0.01}: pins the workers to the nodes that offer them (`ray start --resources`)")
    profile_steps: int = _f(0, min=0, help="torch.profiler over this many steps after the first report, on rank 0: "
                            "ms per step of data wait, forward (log-mel, CNN), backward, optimizer, report; "
                            "RUN_DIR/profile_<stage>.json and a Chrome trace (0 = off)")


@dataclass
class SeparationConfig(TrainingConfig):
    """MixIT separator training (sslsep.separation). Model fields left empty ('' or 0)
    take the value of the chosen size (sslsep.separation.model.SIZES)."""
    size: str = _f("quick", choices=("quick", "paper"))
    front_end: str = _f("", choices=("", "learned", "stft"))
    n_sources: int = _f(0, min=0, max=16, help="M outputs; 0 = the size's default")
    mask_activation: str = _f("", choices=("", "sigmoid", "softmax"))
    consistency: str = _f("", choices=("", "uniform", "learned", "none"))
    steps: int = _f(2000, min=1)
    batch_clips: int = _f(8, min=2, help="clips per worker and step; pairs make the mixtures of mixtures")
    grad_clip: float = _f(5.0, min=0.0, help="max gradient norm; 0 = off")
    snr_max: float = _f(30.0, min=0.0, help="soft threshold of the MixIT negative SNR")
    val_every: int = _f(200, min=1, help="steps between validations and resumable checkpoints")
    val_clips: int = _f(64, min=2)
    val_fraction: float = _f(0.1, min=0.0, max=0.5,
                             help="real data: share of recording groups (e.g. fsID) held out")
    checkpoint_steps: list[int] = _f([250, 500, 1000, 2000], min=1,
                                     help="steps kept as convergence states (and the last step)")
    cache_gb: float = _f(4.0, min=0.0, help="training clips (folders, synthetic scenes) that fit in this many GB "
                         "decoded are decoded once and kept in Ray's object store across epochs, and one CPU "
                         "trainer (torch_threads 0) then takes every CPU of its machine; 0 = stream every epoch")
    registry: str = _f("", help="registry.json of trained separators, local or s3://. Set: the separation "
                       "stage is skipped and every stage that uses separators (views, pretraining, sweeps) "
                       "reads it; '': the run's own RUN_DIR/registry.json, trained by the separation stage")

    def model_overrides(self) -> dict:
        fields = {"front_end": self.front_end, "n_sources": self.n_sources,
                  "mask_activation": self.mask_activation, "consistency": self.consistency}
        return {k: v for k, v in fields.items() if v}


@dataclass
class AugmentConfig:
    """The separation augmentation service (sslsep.views): separators -> views of each clip."""
    separators: list[str] = _f([], help="names or steps from the registry; [] = all")
    kinds: list[str] = _f(["mixture", "channel", "sum"],
                          help="view kinds to draw from: mixture, channel, sum")
    views_per_clip: int = _f(2, min=1, max=16)
    across_separators: bool = _f(True, help="each view may come from a different separator")
    anchor_mixture: bool = _f(False, help="the first view of every clip is the mixture "
                              "(with kinds=[channel]: the mixture <-> channel control)")
    crop_seconds: float = _f(2.0, min=0.1, help="length of every view (at most the clip)")
    same_crop: bool = _f(False, help="all views of a clip from one time span (else independent crops)")
    min_channel_db: float = _f(-30.0, max=0.0,
                               help="channels quieter than this, relative to the mixture, are not views")
    context_seconds: float = _f(0.5, min=0.0, help="context each side of a crop that its separator also "
                                "sees (the span separated; the whole clip when that is shorter)")
    precision: str = _f("fp32", choices=("fp32", "bf16"), help="separators' forward pass: bf16 = autocast "
                        "(outputs cast back to fp32 before views are cut); for GPUs")
    max_channel_db: float = _f(20.0, help="a separated channel louder than the mixture by more than this "
                               "(or non-finite) is bad output: its view falls back to the mixture")
    max_bad_share: float = _f(0.5, min=0.0, max=1.0, help="a separator whose output is bad for more than "
                              "this share of its views (after 32) stops the job, naming it")
    gain_db: list[float] = _f([0.0, 0.0], help="waveform augmentation after the views are cut: each view's "
                              "level changes by a gain drawn uniformly from [low, high] dB ([0, 0] = off)")
    mix_prob: float = _f(0.0, min=0.0, max=1.0, help="mix-back: the share of views mixed with a crop of another "
                         "clip of the same batch, at a level of `mix_db` relative to the view (0 = off)")
    mix_db: list[float] = _f([-20.0, -10.0], help="mix-back level [low, high], dB of the other clip's crop "
                             "relative to the view's power, drawn uniformly per mixed view")
    batch_size: int = _f(8, min=1, help="clips per separator call")
    min_actors: int = _f(1, min=1)
    max_actors: int = _f(1, min=1)
    cpus_per_actor: float = _f(0.5, min=0.0, help="fractional, so that on 2 CPUs one pretrain worker (1) + one "
                               "actor (0.5) + one decode task (0.5) fit (sslsep.fit)")
    gpus_per_actor: float = _f(0.0, min=0.0, max=8.0, help="fractions share a GPU between actors")
    torch_threads: int = _f(1, min=1)
    max_restarts: int = _f(-1, min=-1, help="actor restarts after a crash (-1 = unlimited)")
    resources: dict[str, float] = _f({}, help="custom Ray resources each actor also holds, e.g. {separator_node: "
                                     "0.01}: pins the actors to the nodes that offer them (`ray start --resources`)")


@dataclass
class PretrainConfig(TrainingConfig):
    """Contrastive pretraining on views (sslsep.contrastive): encoder, objectives, training."""
    arch: str = _f("compact", choices=("compact", "resnet"))
    embed_dim: int = _f(128, min=8)
    proj_dim: int = _f(128, min=8)
    pool: str = _f("meanmax", choices=("mean", "max", "meanmax"))
    w_sim: float = _f(1.0, min=0.0, help="weight of similarity maximisation (NT-Xent)")
    w_coinc: float = _f(1.0, min=0.0, help="weight of coincidence prediction")
    similarity: str = _f("cosine", choices=("cosine", "bilinear"))
    temperature: float = _f(0.1, min=1e-3, max=10.0)
    global_negatives: bool = _f(True, help="negatives from every worker's batch (all_gather); false: per worker")
    steps: int = _f(1000, min=1)
    batch_clips: int = _f(32, min=2, help="clips per worker and step (each with augment.views_per_clip views)")
    weight_decay: float = _f(1e-4, min=0.0)
    log_every: int = _f(50, min=1, help="steps between metrics lines and resumable checkpoints")
    checkpoint_steps: list[int] = _f([], min=1, help="steps kept as encoder files (and the last step)")
    views_source: str = _f("live", choices=("live", "precomputed"),
                           help="live: the augmentation service feeds training; precomputed: views "
                                "are computed once, held in memory, then trained on")
    monitor_every: int = _f(100, min=0, help="k-NN representation monitor (sslsep.contrastive.monitor): at the report "
                            "steps (`log_every`) that are multiples of this, and the final step, rank 0 scores every "
                            "variant's clip embeddings with a cosine k-NN on a fixed labelled split; 0 = off (also off "
                            "when the data carry no labels)")
    monitor_clips: int = _f(256, min=4, help="labelled clips of the monitor's split (the first in hash order of their "
                            "ids), halved by recording group into k-NN references and queries")
    monitor_k: int = _f(20, min=1, help="neighbours that vote in the monitor's k-NN")
    monitor_temperature: float = _f(0.07, min=1e-3, max=10.0, help="the monitor's vote weight is exp(cosine / this)")


CLASSIFIERS = ("linear", "mlp")  # sslsep.evaluation.classifiers.KINDS


@dataclass
class TaskConfig:
    """A labelled task judged beside the run's own sources (`evaluation.tasks`): it need not be
    pretrained on. Its protocol follows from its data: its own folds (leave one out), grouped
    k-fold over a single fold, or the synthetic protocol for `path: ''`."""
    path: str = _f("", help="labelled folder or shard prefix, local or s3://; '' = the synthetic scenes")
    kind: str = _f("auto", choices=SOURCE_KINDS, help="as data.source")
    name: str = _f("", help="the task's name in the suite; '' = the folder's name (or 'synthetic')")
    labels_csv: str = _f("", help="as data.labels_csv")
    class_index_csv: str = _f("", help="as data.class_index_csv")
    max_clips: int = _f(0, min=0, help="as data.max_clips")


@dataclass
class EvaluationConfig:
    """Shallow evaluation of frozen embeddings (sslsep.evaluation): linear / one-hidden-layer
    classifiers on labelled clips; mAP, ROC AUC, d' and (single-label) accuracy."""
    protocol: str = _f("auto", choices=("auto", "synthetic", "folds", "audioset"),
                       help="auto: audioset when train_csv and eval_csv are set, synthetic when data "
                            "is synthetic, else folds (leave-one-fold-out, or grouped k-fold for one fold)")
    task: str = _f("auto", choices=("auto", "single", "multi"),
                   help="auto: single-label when every labelled clip has exactly one label")
    pool: str = _f("encoder", choices=("encoder", "mean", "max", "meanmax"),
                   help="clip embedding from frame embeddings; encoder = the encoder's own pooling; "
                        "meanmax = mean + max (as the encoder defines it)")
    classifiers: list[str] = _f(["linear", "mlp"], choices=CLASSIFIERS,
                                help="linear and/or mlp (one hidden layer)")
    hidden: int = _f(512, min=1, help="hidden units of the mlp classifier")
    dropout: float = _f(0.2, min=0.0, max=0.9, help="dropout before the mlp's output layer")
    lr: float = _f(3e-3, min=0.0)
    weight_decay: float = _f(1e-4, min=0.0)
    batch_size: int = _f(64, min=1, help="classifier training batch (clips)")
    max_epochs: int = _f(200, min=1)
    early_stop: str = _f("score", choices=("score", "loss"),
                         help="what the validation clips judge: score = accuracy (single-label) or mAP "
                              "(multi-label), ties to the lower loss; loss = cross-entropy")
    patience: int = _f(20, min=1, help="epochs without a better validation figure before stopping")
    fit_jobs: int = _f(0, min=0, help="processes that train the classifiers at once (the fits are seeded: the rows "
                       "are the same for any value); 0 = auto: as many as this process's torch threads (its "
                       "cores, or Ray's share in a Ray worker) when the task has 200 clips or more, else 1; "
                       "1 = one after another in this process")
    refit: bool = _f(True, help="after early stopping, retrain on the whole training side (validation "
                     "clips included) for the chosen number of epochs")
    val_fraction: float = _f(0.15, min=0.0, max=0.5,
                             help="share of the training folds' recording groups held out for early stopping")
    folds: int = _f(5, min=2, help="k of the grouped k-fold used when the data has a single fold")
    seed: int = _f(0, min=0, help="classifier initialisation, splits and the random-init encoder")
    synth_train_clips: int = _f(1000, min=2, help="synthetic protocol: labelled training scenes")
    synth_eval_clips: int = _f(500, min=1, help="synthetic protocol: evaluation scenes")
    synth_folds: int = _f(5, min=1, help="synthetic protocol: k-fold cross-validation over the training and "
                          "evaluation scenes together (k splits, so the verdict has a standard error); 1 = one "
                          "split, classifiers trained on the training seed and scored on the evaluation seed")
    synth_seed: int = _f(2_000_000, min=0, help="synthetic protocol: training scenes use this seed, "
                         "evaluation scenes seed + 1; both must differ from pretraining's data.synth.seed")
    train_path: str = _f("", help="audioset protocol: folder of training audio ('' = data.path)")
    train_csv: str = _f("", help="audioset protocol: segments CSV of the training clips (balanced_train)")
    eval_path: str = _f("", help="audioset protocol: folder of evaluation audio ('' = data.path)")
    eval_csv: str = _f("", help="audioset protocol: segments CSV of the evaluation clips (eval)")
    embed_batch: int = _f(32, min=1, help="clips per encoder call")
    use_ray: bool = _f(False, help="true: embed with Ray Data batch inference (an actor pool); "
                       "false: in this process (small sets)")
    min_actors: int = _f(1, min=1)
    max_actors: int = _f(1, min=1)
    cpus_per_actor: float = _f(0.5, min=0.0, help="fractional, so decode tasks still schedule beside actors")
    gpus_per_actor: float = _f(0.0, min=0.0, max=8.0)
    torch_threads: int = _f(1, min=1, help="torch threads per embedding actor (Ray path)")
    resources: dict[str, float] = _f({}, help="custom Ray resources each embedding actor also holds (pins them "
                                     "to the nodes that offer them, as augment.resources does)")
    source_tasks: bool = _f(True, help="every labelled source of the run (data.path or each of data.sources) is a "
                            "task; false: only `tasks` (and the audioset protocol's train/eval CSVs)")
    tasks: list[TaskConfig] = _f([], help="more labelled tasks, judged with the run's sources (a suite: a table per "
                                 "task, each extractor's mean over tasks, one paired verdict pooled over them)")


CONTROLS = ("mixture-only", "channels-only", "mixture-channel", "sim-only", "coinc-only")


@dataclass
class JointConfig:
    """What experiments/joint.py runs beside the configured model: the paper's controls, each
    pretrained on the same budget (steps, batch, views) and judged under the same protocol."""
    controls: list[str] = _f(["mixture-only", "sim-only", "coinc-only"], choices=CONTROLS,
                             help="mixture-only: two crops of the mixture (no separation, COLA-style); "
                                  "channels-only: separated channels and sums; mixture-channel: the "
                                  "mixture against a channel; sim-only / coinc-only: one objective")
    seeds: list[int] = _f([], min=0, help="pretraining seeds: every variant is pretrained once per seed (same "
                          "separators, data and budget) and judged on the same splits, so the verdict has a spread "
                          "over runs; [] = the config's `seed` only")
    evaluate: bool = _f(True, help="run the shallow evaluation and write results.md")
    report_clips: int = _f(4, min=0, help="clips in the listening panel of RUN_DIR/report.html, written at the end "
                           "(`sslsep report run`); 0 = a page without it")
    report_map: str = _f("tsne", choices=("tsne", "pca"), help="projection of the report's embedding maps")


@dataclass
class RayConfig:
    """How to reach Ray. address '' starts a local cluster; 'auto' joins a running one."""
    address: str = _f("")
    num_cpus: int = _f(0, min=0, help="0 = all cores (local cluster only)")
    num_gpus: int = _f(0, min=0, help="local cluster only; >0 lets tests schedule fake GPUs")
    progress_bars: bool = _f(False, help="Ray Data's own progress bars")
    idle_worker_keep_s: float = _f(60.0, min=0.0, help="local cluster only: an idle worker process is kept this long "
                                   "for the next task (Ray's default: 1 s, after which Ray Data's short read tasks "
                                   "each start a new process that imports torch again); 0 = Ray's default")
    fake_gpus: bool = _f(False, help="the cluster's GPUs are logical only (a dry run on CPU machines: `ray start "
                         "--num-gpus N`): every worker and actor still holds its GPUs as configured, but the "
                         "trainers join with gloo and compute on CPU")
    max_resources: dict[str, float] = _f({}, help="what an autoscaling cluster can grow to, e.g. {CPU: 192, "
                                         "GPU: 16}; {} = what is up now. Set: every stage's totals are "
                                         "checked against it at start (a resource it leaves out counts "
                                         "as 0) and the per-node check is skipped (sslsep.fit)")


@dataclass
class ExperimentConfig:
    name: str = _f("sslsep", help="prefix of run names; the rest is a hash of the config")
    seed: int = _f(0, min=0)
    audio: AudioConfig = field(default_factory=AudioConfig)
    data: DataConfig = field(default_factory=DataConfig)
    separation: SeparationConfig = field(default_factory=SeparationConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    ray: RayConfig = field(default_factory=RayConfig)


# --------------------------------------------------------------------------- loading

def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str, origin: str) -> Any:
    """Check `value` against the annotation `tp`; ints widen to floats, nothing else converts."""
    def bad(expect: str) -> ConfigError:
        return ConfigError(f"{origin}: key '{key}' expects {expect}, got {value!r} ({type(value).__name__})")

    base = typing.get_origin(tp)
    if base in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, origin)
    if base is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list of {getattr(item_tp, '__name__', item_tp)}")
        if _is_dataclass_type(item_tp):  # a list of structured entries: each checked as a section
            out = []
            for i, v in enumerate(value):
                entry = copy.deepcopy(v) if isinstance(v, item_tp) else item_tp()
                if not isinstance(v, item_tp):
                    _update(entry, v, f"{key}[{i}].", origin)
                out.append(entry)
            return out
        return [_coerce(v, item_tp, f"{key}[{i}]", origin) for i, v in enumerate(value)]
    if base is dict:
        if not isinstance(value, dict):
            raise bad("a mapping")
        key_tp, item_tp = typing.get_args(tp) or (Any, Any)
        if item_tp is Any:
            return dict(value)
        return {_coerce(k, key_tp, key, origin): _coerce(v, item_tp, f"{key}.{k}", origin) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        number = float(value) if isinstance(value, float) or abs(value) < 2 ** 1000 else math.inf
        if not math.isfinite(number):  # NaN passes every range check: refuse it here
            raise bad("a finite number")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    raise ConfigError(f"{origin}: key '{key}' has unsupported type {tp}")


def _check_range(value: Any, meta: dict, key: str, origin: str) -> None:
    choices, lo, hi = meta.get("choices"), meta.get("min"), meta.get("max")
    for v in value if isinstance(value, list) and choices is not None else [value]:
        if choices is not None and v not in choices:
            raise ConfigError(f"{origin}: key '{key}' must be one of {list(choices)}, got {v!r}")
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if lo is not None and v < lo:
                raise ConfigError(f"{origin}: key '{key}' must be >= {lo}, got {v!r}")
            if hi is not None and v > hi:
                raise ConfigError(f"{origin}: key '{key}' must be <= {hi}, got {v!r}")


# Keys that moved: old dotted name -> new one (a config that still uses the old name is told where).
RENAMED = {"augment.registry": "separation.registry"}


def _update(obj: Any, values: dict, prefix: str, origin: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{origin}: key '{prefix.rstrip('.') or '<root>'}' expects a mapping, got {values!r}")
    hints = typing.get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if key in RENAMED:
            raise ConfigError(f"{origin}: key '{key}' moved to '{RENAMED[key]}'")
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{origin}: unknown key '{key}' (known keys here: {known})")
        tp = hints[name]
        if _is_dataclass_type(tp):
            _update(getattr(obj, name), value, f"{key}.", origin)
            continue
        value = _coerce(value, tp, key, origin)
        _check_range(value, fields[name].metadata, key, origin)
        setattr(obj, name, value)


def _synthetic_data(data: DataConfig) -> bool:
    """The source is the embedded synthetic scenes alone (what `data.source: auto` picks without
    a path or sources)."""
    if data.sources:
        return all(e.kind == "synthetic" or (e.kind == "auto" and not e.path) for e in data.sources) \
            and len(data.sources) == 1
    return data.source == "synthetic" or (data.source == "auto" and not data.path)


def _eval_protocol(cfg: ExperimentConfig) -> str:
    """The evaluation protocol as far as the config alone tells (sslsep.evaluation.protocols
    resolves `auto` the same way, looking at the data for folds)."""
    ev = cfg.evaluation
    if ev.protocol != "auto":
        return ev.protocol
    if ev.train_csv and ev.eval_csv:
        return "audioset"
    return "synthetic" if _synthetic_data(cfg.data) else "folds"


def _validate(cfg: ExperimentConfig, origin: str) -> None:
    """Rules that span several keys: all of them, here, so a config that cannot run is refused
    when it is loaded, not after a stage has spent its minutes. Rules that need the data
    (clip counts of a folder, held-out groups) stay where the data is read."""
    _validate_data(cfg, origin)
    _validate_stages(cfg, origin)
    _validate_evaluation(cfg, origin)


def _validate_sources(cfg: ExperimentConfig, origin: str) -> None:
    d = cfg.data
    if d.sources and (d.path or d.source != "auto"):
        raise ConfigError(f"{origin}: key 'data.sources' names the sources, so 'data.path' ({d.path!r}) and "
                          f"'data.source' ({d.source!r}) must be left empty / auto (give every source as an entry)")
    for section, entries in (("data.sources", d.sources), ("evaluation.tasks", cfg.evaluation.tasks)):
        seen: dict[str, int] = {}
        for i, e in enumerate(entries):
            if e.kind in ("folder", "parquet") and not e.path:
                raise ConfigError(f"{origin}: key '{section}[{i}].kind' is {e.kind!r} but '{section}[{i}].path' "
                                  f"is empty")
            name = e.name or source_name(e.path, e.kind)
            if name in seen:
                raise ConfigError(f"{origin}: '{section}[{i}]' and '{section}[{seen[name]}]' are both named "
                                  f"{name!r}; give one a 'name'")
            seen[name] = i


def _validate_data(cfg: ExperimentConfig, origin: str) -> None:
    _validate_sources(cfg, origin)
    d, a = cfg.data, cfg.audio
    if d.source in ("folder", "parquet") and not d.path:
        raise ConfigError(f"{origin}: key 'data.source' is {d.source!r} but 'data.path' is empty")
    hop = round(a.hop_ms * a.sample_rate / 1000) / a.sample_rate
    if hop > MAX_FRAME_HOP_S:
        raise ConfigError(f"{origin}: key 'audio.hop_ms' ({a.hop_ms}) makes a {hop * 1000:g} ms mel hop at "
                          f"'audio.sample_rate' {a.sample_rate}; the encoder needs at most "
                          f"{MAX_FRAME_HOP_S * 1000:g} ms (HEAR timestamps)")
    if a.f_min >= min(a.f_max, a.sample_rate / 2):
        raise ConfigError(f"{origin}: key 'audio.f_min' ({a.f_min}) must be below 'audio.f_max' ({a.f_max}) "
                          f"and half 'audio.sample_rate' ({a.sample_rate / 2:g})")
    if not _synthetic_data(d):
        return
    # synthetic scenes: the clip count is known, so is whether one training batch fills
    # (each Ray Train worker reads an equal share and drops a last partial batch)
    for section in ("separation", "pretrain"):
        stage = getattr(cfg, section)
        workers = stage.num_workers if stage.use_ray else 1
        if d.synth.num_clips < stage.batch_clips * workers:
            per = f" x '{section}.num_workers' ({workers})" if workers > 1 else ""
            raise ConfigError(f"{origin}: key 'data.synth.num_clips' ({d.synth.num_clips}) is below one training "
                              f"batch, '{section}.batch_clips' ({stage.batch_clips}){per}: no training batch")


def _validate_stages(cfg: ExperimentConfig, origin: str) -> None:
    s = cfg.data.synth
    if s.min_events > s.max_events:
        raise ConfigError(f"{origin}: key 'data.synth.min_events' ({s.min_events}) exceeds "
                          f"'data.synth.max_events' ({s.max_events})")
    if len(s.gain_db) != 2 or s.gain_db[0] > s.gain_db[1]:
        raise ConfigError(f"{origin}: key 'data.synth.gain_db' must be [low, high], got {s.gain_db}")
    sep = cfg.separation
    if sep.batch_clips % 2:
        raise ConfigError(f"{origin}: key 'separation.batch_clips' must be even (pairs of clips), "
                          f"got {sep.batch_clips}")
    if sorted(set(sep.checkpoint_steps)) != sep.checkpoint_steps:
        raise ConfigError(f"{origin}: key 'separation.checkpoint_steps' must be increasing, "
                          f"got {sep.checkpoint_steps}")
    aug = cfg.augment
    bad_kinds = sorted(set(aug.kinds) - {"mixture", "channel", "sum"})
    if bad_kinds or not aug.kinds:
        raise ConfigError(f"{origin}: key 'augment.kinds' takes mixture, channel, sum; got {aug.kinds}")
    if len(set(cfg.joint.seeds)) != len(cfg.joint.seeds):
        raise ConfigError(f"{origin}: key 'joint.seeds' repeats a seed: {cfg.joint.seeds}")
    for key in ("gain_db", "mix_db"):
        lo_hi = getattr(aug, key)
        if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
            raise ConfigError(f"{origin}: key 'augment.{key}' must be [low, high], got {lo_hi}")
    pre = cfg.pretrain
    if pre.w_sim == 0 and pre.w_coinc == 0:
        raise ConfigError(f"{origin}: keys 'pretrain.w_sim' and 'pretrain.w_coinc' are both 0: nothing to learn")
    if aug.views_per_clip < 2 and (pre.w_sim > 0 or pre.w_coinc > 0):
        raise ConfigError(f"{origin}: key 'augment.views_per_clip' must be >= 2 for contrastive "
                          f"pretraining, got {aug.views_per_clip}")
    if aug.min_actors > aug.max_actors:
        raise ConfigError(f"{origin}: key 'augment.min_actors' ({aug.min_actors}) exceeds "
                          f"'augment.max_actors' ({aug.max_actors})")
    if cfg.audio.hop_ms > cfg.audio.win_ms:
        raise ConfigError(f"{origin}: key 'audio.hop_ms' ({cfg.audio.hop_ms}) exceeds 'audio.win_ms'")
    for section in ("separation", "pretrain"):
        st = getattr(cfg, section)
        if st.min_workers > st.num_workers:
            raise ConfigError(f"{origin}: key '{section}.min_workers' ({st.min_workers}) exceeds "
                              f"'{section}.num_workers' ({st.num_workers})")


def _validate_evaluation(cfg: ExperimentConfig, origin: str) -> None:
    ev = cfg.evaluation
    if not ev.classifiers:
        raise ConfigError(f"{origin}: key 'evaluation.classifiers' is empty; take one or more of {list(CLASSIFIERS)}")
    if ev.min_actors > ev.max_actors:
        raise ConfigError(f"{origin}: key 'evaluation.min_actors' ({ev.min_actors}) exceeds "
                          f"'evaluation.max_actors' ({ev.max_actors})")
    if bool(ev.train_csv) != bool(ev.eval_csv):
        have, lack = ("train_csv", "eval_csv") if ev.train_csv else ("eval_csv", "train_csv")
        raise ConfigError(f"{origin}: key 'evaluation.{have}' is set but 'evaluation.{lack}' is not: "
                          f"the audioset protocol needs both")
    protocol = _eval_protocol(cfg)
    if protocol == "audioset":
        if not ev.train_csv:
            raise ConfigError(f"{origin}: key 'evaluation.protocol' is 'audioset', which needs "
                              f"'evaluation.train_csv' and 'evaluation.eval_csv'")
        for side in ("train", "eval"):
            if not (getattr(ev, f"{side}_path") or cfg.data.path):
                raise ConfigError(f"{origin}: the audioset protocol needs 'evaluation.{side}_path' or 'data.path'")
    if protocol == "synthetic":
        ours = {ev.synth_seed, ev.synth_seed + 1}
        theirs = {cfg.data.synth.seed, cfg.data.synth.seed + VAL_SEED_OFFSET}
        clash = sorted(ours & theirs)
        if clash:
            raise ConfigError(f"{origin}: key 'evaluation.synth_seed' ({ev.synth_seed}) makes evaluation scenes "
                              f"from seed {clash[0]}, which pretraining uses ('data.synth.seed' "
                              f"{cfg.data.synth.seed}, separation validation at + {VAL_SEED_OFFSET}); choose another")


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=VALUE' -> (['a','b','c'], yaml-parsed VALUE)."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = _yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({e})") from None
    return key.split("."), value


def _apply_overrides(cfg: ExperimentConfig, overrides: typing.Sequence[str], origin: str = "") -> None:
    """`key.path=value` texts into `cfg`, strictly; errors name `origin` or the `--set`."""
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _update(cfg, nested, "", origin or f"--set {text}")


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = (),
                data: str | typing.Sequence[str] | None = None) -> ExperimentConfig:
    """Defaults <- YAML file <- `--set` overrides <- `--data` (a shortcut: one path sets
    data.path, several set data.sources, one entry each with weight 1)."""
    import yaml

    cfg = ExperimentConfig()
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"{origin}: cannot read config ({e.strerror})") from None
        try:
            values = _yaml(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{origin}: not valid YAML ({e})") from None
        _update(cfg, values, "", origin)
    _apply_overrides(cfg, overrides)
    if isinstance(data, str):
        data = [data]
    if data:
        cfg.data.source, cfg.data.path, cfg.data.sources = "auto", "", []
        if len(data) == 1:
            cfg.data.path = data[0]
        else:
            cfg.data.sources = [SourceConfig(path=p) for p in data]
    else:
        data = None
    # cross-key rules once, on the whole config: a file may rely on --set to complete it
    parts = ([str(path)] if path is not None else []) + (["--set"] if overrides else []) + \
        (["--data"] if data is not None else [])
    _validate(cfg, " + ".join(parts) or "config")
    _absolute_paths(cfg)
    return cfg


# Local paths that become absolute when a config is loaded (or a key is replaced): Ray
# workers run in other directories.
PATH_KEYS = ("data.path", "data.labels_csv", "data.class_index_csv", "separation.registry",
             "evaluation.train_path", "evaluation.train_csv", "evaluation.eval_path", "evaluation.eval_csv")


ENTRY_PATH_KEYS = ("path", "labels_csv", "class_index_csv")  # of each data.sources / evaluation.tasks entry


def _absolute(value: str) -> str:
    return str(Path(value).resolve()) if value and "://" not in value and not Path(value).is_absolute() else value


def _absolute_paths(cfg: ExperimentConfig, keys: typing.Iterable[str] = PATH_KEYS + ("data.sources",
                                                                                       "evaluation.tasks")) -> None:
    for key in keys:
        if key in ("data.sources", "evaluation.tasks"):
            for entry in cfg.data.sources if key == "data.sources" else cfg.evaluation.tasks:
                for name in ENTRY_PATH_KEYS:
                    setattr(entry, name, _absolute(getattr(entry, name)))
            continue
        *sections, name = key.split(".")
        obj = cfg
        for section in sections:
            obj = getattr(obj, section)
        setattr(obj, name, _absolute(getattr(obj, name)))


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(values: dict, origin: str = "<dict>") -> ExperimentConfig:
    cfg = ExperimentConfig()
    _update(cfg, values, "", origin)
    _validate(cfg, origin)
    return cfg


def _nested(key: str, value: Any, origin: str) -> dict:
    """'a.b.c', value -> {'a': {'b': {'c': value}}}."""
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{origin}: {key!r} is not a dotted config key")
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def _apply(cfg: ExperimentConfig, values: typing.Mapping[str, Any], origin: str) -> None:
    if not isinstance(values, typing.Mapping):
        raise ConfigError(f"{origin}: expected a mapping of dotted keys to values, got {values!r}")
    for key, value in values.items():
        _update(cfg, _nested(key, value, origin), "", origin)


def replace(cfg: ExperimentConfig, values: typing.Mapping[str, Any], origin: str = "config") -> ExperimentConfig:
    """A new config: `cfg` with `{dotted.key: value}` applied in order. Values are Python
    values, checked exactly as a config file's are (types, ranges, unknown and moved keys),
    never parsed; then every cross-key rule. Local paths among `PATH_KEYS` become absolute.
    Errors name `origin`. `cfg` itself is left as it was."""
    out = copy.deepcopy(cfg)
    _apply(out, values, origin)
    _validate(out, origin)
    _absolute_paths(out, [p for p in PATH_KEYS + ("data.sources", "evaluation.tasks")
                          if any(p == k or p.startswith(f"{k}.") for k in values)])
    return out


def check_values(values: typing.Mapping[str, Any], origin: str) -> None:
    """Each dotted key exists and its value has the key's type and range, on the defaults:
    what can be checked before the config the values will meet is known (sweep files).
    Cross-key rules need that config: `replace`."""
    _apply(ExperimentConfig(), values, origin)


def dump_yaml(cfg: Any) -> str:
    import yaml

    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_hash(cfg: Any, length: int = 8) -> str:
    """Stable hash of the resolved config: same config -> same run name -> the run resumes."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def run_name(cfg: ExperimentConfig, stage: str) -> str:
    return f"{cfg.name}-{stage}-{config_hash(cfg)}"
