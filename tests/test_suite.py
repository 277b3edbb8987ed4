"""The evaluation suite: a task per labelled source, per-task tables, the pooled verdict."""

import json
import statistics

import numpy as np
import pytest
import soundfile as sf

from sslsep.config import TaskConfig, load_config
from sslsep.evaluation import evaluate_encoders
from sslsep.evaluation.suite import suite_tasks, task_results
from sslsep.pipeline import verdict
from sslsep.run import RunDir
from sslsep.tuning.sweep import _metric_of

TINY = ["audio.clip_seconds=0.5", "pretrain.embed_dim=16", "evaluation.hidden=16", "evaluation.max_epochs=8",
        "evaluation.patience=3", "evaluation.classifiers=[linear]", "evaluation.folds=3"]


def _clip(path, freq, seed):
    t = np.arange(8000) / 16000
    noise = np.random.default_rng(seed).normal(0, 0.02, 8000)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32), 16000)


def labelled_folder(root, n, folds, groups=None, extra_unlabelled=0):
    """`n` clips of two classes (a low and a high tone), ESC-50 style CSV (filename, category,
    fold, and fsID when `groups`); `extra_unlabelled` clips without a CSV row."""
    root.mkdir(parents=True)
    lines = ["filename,category,fold" + (",fsID" if groups else "")]
    for i in range(n):
        cls = ("low", "high")[i % 2]
        _clip(root / f"c{i:02d}.wav", (300 if cls == "low" else 2000) + 10 * i, i)
        lines.append(f"c{i:02d}.wav,{cls},{folds[i]}" + (f",{groups[i]}" if groups else ""))
    for j in range(extra_unlabelled):
        _clip(root / f"x{j}.wav", 700, 100 + j)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def folders(tmp_path):
    esc = labelled_folder(tmp_path / "esc", 12, [1 + i // 4 for i in range(12)], extra_unlabelled=1)
    us = labelled_folder(tmp_path / "us8k", 12, [1] * 12, groups=[f"{i // 2}" for i in range(12)])
    bare = tmp_path / "bare"
    bare.mkdir()
    for i in range(3):
        _clip(bare / f"b{i}.wav", 500, 200 + i)
    return esc, us, bare


def test_two_tasks_end_to_end(folders, tmp_path):
    esc, us, bare = folders
    cfg = load_config(None, TINY, [str(esc), str(us), str(bare)])
    run = RunDir(str(tmp_path / "run"))
    results = evaluate_encoders(cfg, {"logmel-stats": "logmel", "random-init": "random"}, run)
    tasks = {t["name"]: t for t in results["tasks"]}
    assert list(tasks) == ["esc", "us8k"]
    assert "leave-one-fold-out over 3 folds" in tasks["esc"]["protocol"]["description"]
    assert "grouped 3-fold" in tasks["us8k"]["protocol"]["description"]
    assert [s["name"] for s in results["suite"]["not_tasks"]] == ["bare"]
    assert "none of its 3 clips has a label" in results["suite"]["not_tasks"][0]["reason"]
    for t in tasks.values():  # per-task accounting: in = evaluated + skipped + unlabelled
        c = t["clips"]
        assert c["total"] == c["used"] + len(c["skipped"]) + len(c["unlabelled"])
        assert {r["extractor"] for r in t["rows"]} == {"logmel-stats", "random-init"}
        assert t["protocol"]["name"] == "folds" and not t["protocol"]["multilabel"]
    assert tasks["esc"]["clips"]["unlabelled"] == ["x0.wav"] and tasks["esc"]["clips"]["used"] == 12
    assert tasks["us8k"]["clips"] == {"total": 12, "used": 12, "skipped": [], "unlabelled": [], "label_problems": []}
    for s in results["suite"]["scores"]:  # the suite mean is the mean of the per-task figures
        per = [next(r["accuracy"] for r in t["rows"] if (r["extractor"], r["classifier"]) ==
                    (s["extractor"], s["classifier"])) for t in results["tasks"]]
        assert s["per_task"] == dict(zip(tasks, per)) and s["mean"] == pytest.approx(statistics.fmean(per))
    assert [t["metric"] for t in results["suite"]["tasks"]] == ["accuracy", "accuracy"]
    assert "no mixture-only control" in results["suite"]["verdict"]
    # the sweep objective: mean over tasks of the best classifier's figure per task
    best = [max(r["accuracy"] for r in t["rows"]) for t in results["tasks"]]
    assert _metric_of(results, "accuracy") == pytest.approx(statistics.fmean(best))
    assert _metric_of(results, "mAP") == pytest.approx(statistics.fmean(max(r["mAP"] for r in t["rows"])
                                                                       for t in results["tasks"]))
    md = (tmp_path / "run" / "results.md").read_text()
    assert "| extractor | classifier | esc (accuracy) | us8k (accuracy) | mean over tasks |" in md
    assert "## Task esc" in md and "## Task us8k" in md and "- `bare`: none of its 3 clips" in md
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(on_disk) == {"tasks", "suite", "extractors", "settings", "embed_s", "wall_s"}
    npz = np.load(tmp_path / "run" / "embeddings.npz")
    assert len(npz["clip_ids"]) == 12  # the first task's clips, for the report's maps
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted({m["task"] for m in lines}) == ["esc", "us8k"] and len(lines) == 4


def test_suite_tasks_from_sources_and_entries(folders):
    esc, us, bare = folders
    cfg = load_config(None, TINY, str(esc))
    cfg.evaluation.tasks = [TaskConfig(path=str(us)), TaskConfig(path=str(esc), name="again")]
    tasks, skipped = suite_tasks(cfg)
    assert [n for n, _ in tasks] == ["esc", "us8k"] and tasks[1][1].data.path == str(us)
    assert skipped == [{"name": "again", "reason": "evaluation.tasks[1] is the same data as the task 'esc'"}]
    cfg.evaluation.tasks = [TaskConfig(path=str(us), name="esc")]
    with pytest.raises(ValueError, match=r"evaluation.tasks\[0\].name"):
        suite_tasks(cfg)
    cfg.evaluation.source_tasks, cfg.evaluation.tasks = False, []
    with pytest.raises(ValueError, match="no task to judge"):
        suite_tasks(cfg)
    synth = load_config(None, TINY)
    assert [n for n, _ in suite_tasks(synth)[0]] == ["synthetic"]
    only_bare = load_config(None, TINY, str(bare))
    with pytest.raises(ValueError, match="no labelled task.*bare: none of its 3 clips"):
        evaluate_encoders(only_bare, {"logmel-stats": "logmel"})


def _rows(name, diffs, seed=None, metric="accuracy"):
    """A configured and a mixture-only row whose per-split difference is `diffs`."""
    tag = f" [seed {seed}]" if seed is not None else ""
    out = []
    for ext, vals in ((f"configured (x){tag}", [0.5 + d for d in diffs]), (f"mixture-only{tag}", [0.5] * len(diffs))):
        folds = [{"split": f"fold {i}", metric: v} for i, v in enumerate(vals)]
        out.append({"extractor": ext, "classifier": "linear", metric: statistics.fmean(vals), "folds": folds})
    return out


def suite(per_task):
    """{task: (multilabel, rows)} -> a results.json-shaped dict."""
    return {"tasks": [{"name": n, "protocol": {"multilabel": ml}, "rows": rows} for n, (ml, rows) in per_task.items()]}


def _suite_line(text):
    return next(x for x in text.splitlines() if x.startswith("suite verdict"))


def test_pooled_suite_verdict():
    a, b = [0.05, 0.06, 0.04], [0.05, 0.07]  # task a: accuracy, 3 splits; task b: mAP, 2 splits
    text = verdict(suite({"a": (False, _rows("a", a)), "b": (True, _rows("b", b, metric="mAP"))}))
    assert "a: verdict (linear, accuracy)" in text and "b: verdict (linear, mAP)" in text
    line = _suite_line(text)
    assert "2 task(s): a, b" in line and "pooled over 5 pairs" in line and "better in 5/5 pairs" in line
    assert f"{statistics.fmean(a + b):+.3f}" in line and line.endswith("separated views BEAT mixture-only")
    lean = [0.06, -0.03, 0.05, -0.02, 0.04]  # mean 0.02, standard error 0.0187: between 1 and 2
    line = _suite_line(verdict(suite({"a": (False, _rows("a", lean[:3])), "b": (False, _rows("b", lean[3:]))})))
    assert "leans towards separated views" in line
    flat = [0.1, -0.1, 0.05, -0.05, 0.0]
    line = _suite_line(verdict(suite({"a": (False, _rows("a", flat[:3])), "b": (False, _rows("b", flat[3:]))})))
    assert line.endswith("no clear difference")
    # two seeds: 2 tasks x (3 + 2) splits x 2 seeds = 10 pairs; every pair favours separated views, but
    # the seeds disagree on how much: the SE over the seeds' suite means (0.040) is the larger and decides
    rows = {"a": (False, _rows("a", [0.1] * 3, 0) + _rows("a", [0.02] * 3, 1)),
            "b": (False, _rows("b", [0.1] * 2, 0) + _rows("b", [0.02] * 2, 1))}
    line = _suite_line(verdict(suite(rows)))
    se_seeds = statistics.stdev([0.1, 0.02]) / 2 ** 0.5
    assert "pooled over 10 pairs" in line and f"{se_seeds:.3f} over the 2 seeds' suite means" in line
    assert "leans towards separated views" in line and "better in 10/10 pairs" in line
    assert verdict(suite({"a": (False, _rows("a", [0.1])[:1])})).startswith("verdict: no mixture-only control")


def test_legacy_results_read_as_one_task():
    old = {"protocol": {"name": "synthetic", "multilabel": True}, "rows": _rows("x", [0.1, 0.1], metric="mAP")}
    assert [t["name"] for t in task_results(old)] == ["synthetic"]
    assert "synthetic: verdict (linear, mAP)" in verdict(old)
