"""Same config + seed on the same machine -> the same results, to every digit; run
directories whose path YAML would misread (a space, a '#', ': ') work end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "experiments" / "configs" / "debug.yaml"

# what may differ between two identical runs: wall-clock figures and the paths of the run
VOLATILE = {"fit_s", "embed_s", "wall_s", "source", "extractors"}


def _stable(obj):
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


@pytest.mark.slow
@pytest.mark.ray
def test_debug_preset_twice_gives_identical_results(tmp_path):
    runs = [tmp_path / "run #1: first", tmp_path / "run #2: second"]
    # both at once, each on its own local Ray cluster: the timing of one disturbs the other,
    # and what must not move is the result
    procs = [subprocess.Popen([sys.executable, str(REPO / "experiments" / "joint.py"), "--config", str(DEBUG),
                               "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for out in runs]
    for proc in procs:
        log = proc.communicate(timeout=500)[0]
        assert proc.returncode == 0, log[-4000:]
    first, second = (json.loads((out / "results.json").read_text()) for out in runs)
    assert len(first["rows"]) >= 4  # log-mel, random init, configured, mixture-only
    assert _stable(first) == _stable(second)
    tables = [(out / "results.md").read_text().replace(str(out), "RUN_DIR") for out in runs]
    assert tables[0] == tables[1]
    for out in runs:  # the registry under a path with ' #' and ': ' was found and used as it is
        reg = json.loads((out / "registry.json").read_text())
        assert [e["step"] for e in reg["separators"]] == [2, 4]
        ckpt = torch.load(out / "pretrain" / "configured" / "encoder.pt", weights_only=True)
        assert ckpt["config"]["separation"]["registry"] == str(out / "registry.json")
    # the two encoders are the same weights, not merely close figures
    a, b = (torch.load(out / "pretrain" / "configured" / "encoder.pt", weights_only=True)["state_dict"]
            for out in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
