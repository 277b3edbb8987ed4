"""TensorBoard event files beside metrics.jsonl, read back with TensorBoard's own reader."""


import pytest

from sslsep.events import scalars
from sslsep.run import RunDir

from conftest import read_scalars


def test_metrics_lines_become_scalars_by_stage_step_and_row():
    values, step = scalars({"stage": "pretrain", "step": 40, "total": 1.5, "final": False, "lr": 1e-3,
                            "stopped_by": "steps", "nan": float("nan")})
    assert step == 40 and dict(values) == {"pretrain/total": 1.5, "pretrain/lr": 1e-3}
    values, step = scalars({"stage": "evaluate", "extractor": "mixture-only", "classifier": "linear",
                            "mAP": 0.6, "accuracy": None})
    assert step == 0 and dict(values) == {"evaluate/mixture-only/linear/mAP": 0.6}
    values, _ = scalars({"stage": "evaluate", "extractor": "x", "classifier": "mlp", "task": "esc50", "accuracy": 0.7})
    assert dict(values) == {"evaluate/x/mlp/esc50/accuracy": 0.7}  # a suite's tasks do not share a tag


def test_run_dir_writes_events_tensorboard_reads(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    for step in (20, 40):
        run.log_metrics({"stage": "separation", "step": step, "val_mom_si_snri": step / 10})
    RunDir(str(tmp_path / "run" / "pretrain" / "configured")).log_metrics({"stage": "pretrain", "step": 5,
                                                                          "total": 2.0})
    got = read_scalars(tmp_path / "run")
    assert [(s, pytest.approx(v)) for s, v in got["separation/val_mom_si_snri"]] == [(20, 2.0), (40, 4.0)]
    assert read_scalars(tmp_path / "run" / "pretrain" / "configured")["pretrain/total"] == [(5, 2.0)]
    assert len(run.metrics()) == 2  # metrics.jsonl as before
