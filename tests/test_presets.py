from pathlib import Path

import pytest

from sslsep.config import load_config

PRESETS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_strictly(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
