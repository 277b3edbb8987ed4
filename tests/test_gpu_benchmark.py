"""experiments/benchmarks/gpu.py runs where only torch and torchaudio are installed (a bare
CUDA machine): its tiny size on CPU, with the project's I/O libraries made unimportable."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("yaml", "soundfile", "ray", "pyarrow", "s3fs", "fsspec", "optuna", "sklearn")


def test_gpu_benchmark_runs_with_torch_alone(tmp_path):
    out = tmp_path / "gpu.json"
    code = (f"import sys, runpy\nfor m in {BLOCKED!r}: sys.modules[m] = None\n"
            f"sys.argv = ['gpu.py', '--size', 'tiny', '--device', 'cpu', '--out', {str(out)!r}]\n"
            f"runpy.run_path({str(REPO / 'experiments/benchmarks/gpu.py')!r}, run_name='__main__')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    line = json.loads(res.stdout.strip().splitlines()[-1])
    assert line == json.loads(out.read_text())
    for key in ("separator_rtf_fp32", "separator_rtf_bf16", "separator_train_steps_s_fp32",
                "separator_train_steps_s_bf16", "encoder_train_steps_s_fp32", "encoder_train_steps_s_bf16",
                "encoder_train_steps_s_bf16_channels_last"):
        assert line[key] > 0, key
    # the separator GPUs a training GPU needs follow from the measured rates
    assert abs(line["separator_gpus_per_train_gpu"]
               - line["separator_audio_s_per_train_s"] / line["separator_rtf_bf16"]) < 0.02
    assert line["encoder_largest_batch_bf16"] is None  # searched on CUDA only
