"""The evaluation command: `experiments/evaluate.py` and `sslsep evaluate` both run
:func:`evaluate_command`. Imports torch only when it runs, so `sslsep --help` stays quick."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

BASELINES = {"logmel-stats": "logmel", "random-init": "random"}


def _abs(path: str) -> str:
    """Local paths absolute (Ray workers run elsewhere); URIs as they are."""
    return path if "://" in path else str(Path(path).resolve())


def extractor_specs(encoder: str | None = None, baselines=()) -> dict[str, str]:
    """The table's rows: the two baselines, `encoder` as 'trained', then NAME=CKPT pairs."""
    specs = dict(BASELINES)
    if encoder:
        specs["trained"] = _abs(encoder)
    for text in baselines:
        name, sep, uri = text.partition("=")
        if not sep or not name.strip() or not uri.strip():
            raise ValueError(f"--baseline {text!r}: expected NAME=CHECKPOINT")
        if name.strip() in specs:
            raise ValueError(f"--baseline {text!r}: row name {name.strip()!r} is taken")
        specs[name.strip()] = _abs(uri.strip())
    return specs


def add_evaluate_args(parser):
    """--encoder CKPT and --baseline NAME=CKPT (repeatable), beside the run contract's args."""
    from sslsep.run import add_run_args

    add_run_args(parser)
    parser.add_argument("--encoder", help="encoder checkpoint, local or s3:// (the row 'trained')")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=CKPT",
                        help="another encoder checkpoint as row NAME (repeatable)")
    return parser


def evaluate_command(args) -> dict:
    """What `experiments/evaluate.py` and `sslsep evaluate` run."""
    from sslsep.evaluation.evaluate import evaluate_encoders
    from sslsep.run import start_run

    specs = extractor_specs(args.encoder, args.baseline)
    # the extractors are not config: put them in the default run name so runs do not collide
    tag = hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:6]
    cfg, run = start_run(args, f"evaluate-{tag}")
    print(f"run directory: {run.path}")
    if cfg.evaluation.use_ray:
        from sslsep.cluster import check_fits, init_ray

        init_ray(cfg.ray)
        check_fits(cfg, ["evaluate"])  # the embedding actor pool fits the cluster, or exit 2
    results = evaluate_encoders(cfg, specs, run)
    for task in results["tasks"]:
        print(f"evaluation [{task['name']}]: {task['protocol']['description']}")
    for skip in results["suite"]["not_tasks"]:
        print(f"evaluation [{skip['name']}]: not a task ({skip['reason']})")
    print(f"results: {run.uri('results.md')} ({results['wall_s']:.0f} s)")
    return results
