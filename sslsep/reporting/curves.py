"""The report's curves (matplotlib), each from metrics lines that a stage logged:

    separation_curves   validation SI-SNR improvement and MixIT loss against step, the
                        convergence states (registry) marked where they were taken
    pretrain_curves     loss parts, coincidence accuracy and the live monitor against step,
                        one line per variant
    throughput_curves   steps/s and the share of step time spent waiting on data, per stage

A curve whose figures are absent (an older run, a stage not run) gives `figures.empty` with
the reason, never an exception.
"""

from __future__ import annotations

import math

from sslsep import figures

SEPARATION_PANELS = (("SI-SNR improvement on validation mixtures (dB)", (("val_si_snri", "of the sources"),
                                                                         ("val_mom_si_snri", "mixture of mixtures"))),
                     ("MixIT loss (neg. SNR, dB)", (("train_mixit_loss", "training"),
                                                    ("val_mixit_loss", "validation"))))
PRETRAIN_PANELS = (("similarity loss (NT-Xent)", "sim"), ("coincidence loss (BCE)", "coinc"),
                   ("coincidence accuracy", "coinc_acc"))


def _series(lines: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(m["step"], float(m[key])) for m in lines
           if isinstance(m.get(key), (int, float)) and not isinstance(m.get(key), bool)
           and math.isfinite(float(m[key])) and isinstance(m.get("step"), (int, float))]
    pts.sort()
    return [p[0] for p in pts], [p[1] for p in pts]


def _mark_states(ax, registry: dict | None) -> None:
    for e in (registry or {}).get("separators", []):
        ax.axvline(e["step"], color="#888", linestyle="--", linewidth=0.8)
        ax.annotate(e["name"], (e["step"], 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                    va="top", ha="right", color="#555")


def separation_curves(lines: list[dict], registry: dict | None) -> str:
    title = "Separator training (convergence states dashed)"
    if not lines:
        return figures.empty(title, "no separation metrics in RUN_DIR/metrics.jsonl (stage not run here, or the "
                                    "run reused separation.registry)")
    fig, axes = figures.figure(11, 3.2, ncols=len(SEPARATION_PANELS))
    for ax, (name, keys) in zip(axes[0], SEPARATION_PANELS):
        for key, label in keys:
            x, y = _series(lines, key)
            if x:
                ax.plot(x, y, marker="o", markersize=3, label=label)
        _mark_states(ax, registry)
        ax.set(title=name, xlabel="separator step")
        ax.legend(fontsize=8, loc="lower right" if "SI-SNR" in name else "upper right")
    return figures.img(fig, title, "SI-SNRi: the separated channels best matched to the validation clips' own "
                                   "sources; mixture of mixtures: each validation mixture of two clips split back")


def _variant_order(pretrain: dict[str, list[dict]]) -> list[str]:
    return sorted(pretrain, key=lambda n: (not n.startswith("configured"), n))


def pretrain_curves(pretrain: dict[str, list[dict]]) -> str:
    title = "Pretraining, one line per variant"
    if not pretrain:
        return figures.empty(title, "no pretraining metrics (RUN_DIR/pretrain/<variant>/metrics.jsonl)")
    monitor = sorted({k for lines in pretrain.values() for m in lines for k in m if k.startswith("monitor_knn")})
    panels = [*PRETRAIN_PANELS, *((f"live monitor: k-NN {k[len('monitor_knn_'):]}", k) for k in monitor)]
    fig, axes = figures.figure(3.6 * len(panels), 3.2, ncols=len(panels))
    for ax, (name, key) in zip(axes[0], panels):
        drawn = 0
        for i, variant in enumerate(_variant_order(pretrain)):
            x, y = _series(pretrain[variant], key)
            if x:
                ax.plot(x, y, marker="o", markersize=2.5, label=variant, color=figures.PALETTE[i % 10])
                drawn += 1
        ax.set(title=name, xlabel="pretraining step")
        if not drawn:
            ax.text(0.5, 0.5, "off in every variant", ha="center", va="center", transform=ax.transAxes,
                    color="#888")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=8)
    note = "" if monitor else "no live-monitor figures in these metrics (pretrain.monitor_every, or no labels)"
    return figures.img(fig, title, note)


def _throughput(lines: list[dict]) -> tuple:
    return tuple(_series(lines, "steps_per_s")[1]), tuple(_series(lines, "data_wait_share")[1])


def throughput_curves(separation: list[dict], pretrain: dict[str, list[dict]]) -> str:
    title = "Throughput per stage"
    groups: dict[tuple, list[str]] = {}  # variants trained together log the same throughput: one line
    for variant in _variant_order(pretrain):
        groups.setdefault(_throughput(pretrain[variant]), []).append(variant)
    series = ([("separation", separation)] if separation else []) + \
        [(f"pretrain: {' + '.join(names)}", pretrain[names[0]]) for names in groups.values()]
    if not series:
        return figures.empty(title, "no training stage logged throughput")
    fig, axes = figures.figure(11, 3.2, ncols=2)
    for i, (label, lines) in enumerate(series):
        for ax, key in zip(axes[0], ("steps_per_s", "data_wait_share")):
            x, y = _series(lines, key)
            if x:
                ax.plot(x, y, marker="o", markersize=2.5, label=label, color=figures.PALETTE[i % 10])
    axes[0][0].set(title="steps per second (per reporting window)", xlabel="step", yscale="log")
    axes[0][1].set(title="share of step time waiting on data", xlabel="step", ylim=(-0.02, 1.02))
    axes[0][1].legend(fontsize=8)
    return figures.img(fig, title, "each stage's own step axis; the first window includes start-up")
