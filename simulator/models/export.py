"""Write a loadable Hugging Face directory (safetensors) for a model with some tensors replaced."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save_model

from ledger.errors import InputError


@torch.no_grad()
def export_model_dir(model: Any, tokenizer: Any, state_overrides: Mapping[str, torch.Tensor] | None,
                     out_dir: str | os.PathLike) -> Path:
    """Save ``model`` with ``state_overrides`` (state-dict name -> tensor) swapped in, plus its config and
    tokenizer, to ``out_dir`` (written to a temp dir and renamed, so a crash leaves no half directory).
    The model object itself is left exactly as it was. ``load_model(out_dir)`` reads it back."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; choose a new directory or delete it first")
    sd = model.state_dict()
    overrides = dict(state_overrides or {})
    unknown = sorted(set(overrides) - set(sd))
    if unknown:
        raise InputError(f"cannot export: the model has no tensors named {unknown[:5]}")
    saved: dict[str, torch.Tensor] = {}
    try:
        for name, t in overrides.items():
            assert tuple(t.shape) == tuple(sd[name].shape), (
                f"override for {name} has shape {tuple(t.shape)}, the model's is {tuple(sd[name].shape)}")
            saved[name] = sd[name].detach().clone()
            sd[name].copy_(t.to(device=sd[name].device, dtype=sd[name].dtype))
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            model.config.save_pretrained(str(tmp))
            if getattr(model, "generation_config", None) is not None:
                try:
                    model.generation_config.save_pretrained(str(tmp))
                except Exception:  # a generation config is optional for loading
                    pass
            tokenizer.save_pretrained(str(tmp))
        except BaseException:      # a full disk, a kill: no half directory is left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        for name, t in saved.items():  # put the original weights back, bit for bit
            sd[name].copy_(t)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out
