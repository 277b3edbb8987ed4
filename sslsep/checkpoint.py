"""Self-contained model files, local or s3://: weights, constructor arguments, metadata.

One torch file per model: ``state_dict``, ``model_args`` (the JSON-serialisable constructor
keyword arguments, so the file rebuilds its model with no other file) and any extra keys
(step, metrics, resolved config). Writes are atomic (sslsep.storage.write_bytes).
"""

from __future__ import annotations

import io

import torch

from sslsep import storage

RESERVED = ("state_dict", "model_args")


def save_module(model: torch.nn.Module, uri: str, **extra) -> None:
    """`model` must expose its constructor kwargs as `model.config`."""
    clash = sorted(set(RESERVED) & set(extra))
    if clash:
        raise ValueError(f"extra metadata may not use reserved keys {clash}")
    payload = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "model_args": dict(model.config), **extra}
    buf = io.BytesIO()
    torch.save(payload, buf)
    storage.write_bytes(str(uri), buf.getvalue())


def read_checkpoint(uri: str, map_location="cpu", weights_only: bool = True) -> dict:
    """The raw dict of a `save_module` file. weights_only=True unpickles plain data only."""
    data = storage.read_bytes(str(uri))
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=weights_only)


def load_module(cls, uri: str, map_location="cpu", weights_only: bool = True):
    """Rebuild `cls(**model_args)` from a `save_module` file, weights loaded, in eval mode."""
    ckpt = read_checkpoint(uri, map_location, weights_only)
    model = cls(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
    return model.to(device).eval()
