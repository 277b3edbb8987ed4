"""`sslsep ...` command line.

    sslsep data synth DST --num-clips N --seed S     write synthetic scenes, stems, labels.csv
    sslsep data pack SRC DST [--shard-clips N]        folder of audio -> Parquet shards
    sslsep data check PATH_OR_URI                      decode everything, print the report
    sslsep config show [--config F] [--set k=v ...]    print the resolved config
    sslsep evaluate --encoder CKPT [--baseline N=CKPT]  shallow evaluation table (experiments/evaluate.py)
    sslsep report run RUN_DIR [--out F]                RUN_DIR/report.html: results, curves, listening, maps
    sslsep report sweep RUN_DIR                        RUN_DIR/sweep.html: the sweep's dashboard
"""

from __future__ import annotations

import argparse
import json
import sys

from sslsep.config import dump_yaml, load_config
from sslsep.run import main_guard


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def cmd_synth(args) -> None:
    from sslsep.data.synthetic import write_scenes

    cfg = load_config(args.config, args.overrides)
    s = cfg.data.synth
    summary = write_scenes(args.dst, args.num_clips, seed=args.seed, sample_rate=cfg.audio.sample_rate,
                           num_samples=cfg.audio.num_samples, min_events=s.min_events,
                           max_events=s.max_events, gain_db=tuple(s.gain_db))
    print(json.dumps(summary))


def cmd_pack(args) -> None:
    from sslsep.data.pack import pack_folder

    cfg = load_config(args.config, args.overrides, args.src)
    if args.shard_clips:
        cfg.data.shard_clips = args.shard_clips
    if args.labels:
        cfg.data.labels_csv = args.labels
    if args.class_index:
        cfg.data.class_index_csv = args.class_index
    report = pack_folder(cfg.data, args.dst, cfg.audio, workers=args.workers, progress=not args.quiet)
    print(report.summary())
    print(f"wrote {args.dst}/_manifest.json")


def cmd_check(args) -> None:
    from sslsep.data.sources import iter_clips, open_source, report_from_rows

    cfg = load_config(args.config, args.overrides, args.path)
    problems = open_source(cfg.data).listed()[1]
    report = report_from_rows(iter_clips(cfg.data, cfg.audio), problems)
    print(json.dumps(report.to_dict()) if args.json else report.summary())


def cmd_config_show(args) -> None:
    print(dump_yaml(load_config(args.config, args.overrides)), end="")


def cmd_evaluate(args) -> None:
    from sslsep.evaluation.command import evaluate_command

    evaluate_command(args)


def cmd_report_run(args) -> None:
    from sslsep.reporting.run_report import write_run_report

    for path in write_run_report(args.run_dir, args.out, clips=args.clips, method=args.map):
        print(path)


def cmd_report_sweep(args) -> None:
    from sslsep.tuning.report import write_report

    print(write_report(args.run_dir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslsep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="group", required=True)

    data = sub.add_parser("data", help="data tools").add_subparsers(dest="cmd", required=True)
    p = data.add_parser("synth", help="write synthetic sound scenes to a folder")
    p.add_argument("dst")
    p.add_argument("--num-clips", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    _config_args(p)
    p.set_defaults(fn=cmd_synth)

    p = data.add_parser("pack", help="pack a folder of audio into Parquet shards")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--shard-clips", type=int, default=0, help="clips per shard (default: data.shard_clips)")
    p.add_argument("--labels", help="labels CSV (default: found in SRC)")
    p.add_argument("--class-index", help="AudioSet class_labels_indices.csv")
    p.add_argument("--workers", type=int, default=4, help="decode threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _config_args(p)
    p.set_defaults(fn=cmd_pack)

    p = data.add_parser("check", help="decode a source and report every skip and conversion")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    _config_args(p)
    p.set_defaults(fn=cmd_check)

    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="cmd", required=True)
    p = cfg.add_parser("show", help="print the resolved config")
    _config_args(p)
    p.set_defaults(fn=cmd_config_show)

    from sslsep.evaluation.command import add_evaluate_args

    p = sub.add_parser("evaluate", help="judge frozen encoders with shallow classifiers (results table)")
    add_evaluate_args(p)
    p.set_defaults(fn=cmd_evaluate)

    rep = sub.add_parser("report", help="dashboards").add_subparsers(dest="cmd", required=True)
    p = rep.add_parser("run", help="write RUN_DIR/report.html: results, curves, listening panel, embedding maps")
    p.add_argument("run_dir", help="a run directory, local or s3://")
    p.add_argument("--out", help="also write the page here (e.g. a local file for an s3:// run)")
    p.add_argument("--clips", type=int, default=4, help="clips in the listening panel (0: none)")
    p.add_argument("--map", choices=("tsne", "pca"), default="tsne", help="projection of the embedding maps")
    p.set_defaults(fn=cmd_report_run)
    p = rep.add_parser("sweep", help="write RUN_DIR/sweep.html: one self-contained dashboard of a sweep")
    p.add_argument("run_dir", help="the sweep's run directory (holds sweep.json)")
    p.set_defaults(fn=cmd_report_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return main_guard(lambda: args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
