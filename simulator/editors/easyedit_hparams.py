"""EasyEdit's hyper-parameter files for ROME, MEMIT and FT as editledger's hyper-parameters.

EasyEdit (zjunlp/EasyEdit) keeps one YAML file per method and model (``hparams/ROME/gpt-j-6B.yaml``),
read into the dataclasses of ``easyeditor/models/{rome,memit,ft}/*_hparams.py``: ``yaml.safe_load``,
then every top-level string that ``float()`` accepts becomes a float (``HyperParams.
construct_float_from_scientific_notation``: YAML reads ``5e-1`` as a string). ``translate`` reads the
same dictionary and sorts every key into one of four kinds:

* mapped     the same setting under editledger's name (``layers: [5]`` is ROME's and FT's ``layer: 5``);
* checked    editledger does one thing here, and the file must ask for that thing (``fact_token:
             subject_last``, the module names of the model being edited, ``v_loss_layer`` = the last
             layer, statistics in float32, ...); anything else is refused by name;
* elsewhere  a setting of the environment that editledger takes from somewhere else (``model_name`` is
             the replay's model, ``device`` its device, ``stats_dir`` the ledger); accepted and listed in
             the translation's notes;
* unknown    refused by name.

So every key is either honoured or refused: a file never edits differently from what it says without a
word. Where editledger's editor differs from EasyEdit's in code rather than in a key (ROME's weight
decay, FT's bias), the notes say so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ledger.errors import InputError

METHODS = {"ROME": "rome", "MEMIT": "memit", "FT": "ft"}
MAX_FILE_CHARS = 100_000               # EasyEdit's files are under 2,000 characters
FLOAT32_MAX = 3.4028234663852886e38     # FT's "no constraint": clamping float32 values to +-this changes none

# Keys that name the environment; editledger takes each from elsewhere (key -> where).
ELSEWHERE = {
    "model_name": "the model is the replay's --model (model= in Python)",
    "device": "the device is the replay's --device (device= in Python)",
    "stats_dir": "second-moment statistics are kept in the ledger",
    "model_parallel": "editledger keeps the model on one device",
    "max_length": "editledger checks every prompt against the model's context instead of truncating it",
    "batch_size": "a stream's batch steps say which requests are edited together (`stream make --kind batch`)",
    "mom2_dataset": "the statistics corpus is --stats-corpus (stats_corpus= in Python)",
    "attn_module_tmp": "editledger computes losses through the model's own forward pass",
    "ln_f_module": "editledger computes losses through the model's own forward pass",
    "lm_head_module": "editledger computes losses through the model's own forward pass",
    "fp16": "the loader picks the dtype from the device (float32 on CPU, bfloat16 or float16 on CUDA); "
            "the edit runs in it",
    "context_template_length_params": "editledger puts fixed context prefixes (hyper-parameter "
                                      "context_prefixes) before the edit prompt, so that an edit is a "
                                      "replayable function of its inputs; EasyEdit samples them from the model",
}
# Keys whose meaning editledger shares: EasyEdit name -> editledger field, per method.
MAPPED = {
    "rome": {"layers": "layer", "v_num_grad_steps": "v_num_grad_steps", "v_lr": "v_lr",
             "v_weight_decay": "v_weight_decay", "clamp_norm_factor": "clamp_norm_factor",
             "kl_factor": "kl_factor", "mom2_adjustment": "mom2_adjustment", "mom2_n_samples": "mom2_n_samples"},
    "memit": {"layers": "layers", "v_num_grad_steps": "v_num_grad_steps", "v_lr": "v_lr",
              "v_weight_decay": "v_weight_decay", "clamp_norm_factor": "clamp_norm_factor",
              "kl_factor": "kl_factor", "mom2_update_weight": "mom2_update_weight",
              "mom2_n_samples": "mom2_n_samples"},
    "ft": {"layers": "layer", "num_steps": "num_steps", "lr": "lr", "norm_constraint": "norm_constraint",
           "objective_optimization": "objective"},
}
# Differences in code, not in keys, that a user comparing numbers should know.
CODE_NOTES = {
    "rome": ["early stop: EasyEdit stops optimising v* once the loss is below 5e-2; editledger once every "
             "target token's mean probability reaches early_stop_prob (and the first is top-1)"],
    "memit": ["early stop: EasyEdit stops optimising z once the loss is below 5e-2; editledger once every "
              "request's target tokens reach early_stop_prob"],
    "ft": ["EasyEdit fine-tunes every parameter whose name contains rewrite_module_tmp (weight and bias); "
           "editledger fine-tunes the weight only",
           "early stop: EasyEdit stops when the mean loss is below 1e-2; editledger when every target token "
           "is at least early_stop_prob likely"],
}


@dataclass
class Translation:
    """What an EasyEdit file says, in editledger's terms."""
    method: str                                   # editledger's method name: rome, memit or ft
    values: dict[str, Any]                        # editledger hyper-parameter name -> value
    notes: list[str] = field(default_factory=list)   # keys taken from elsewhere, and differences in code
    source: str = ""                              # the file, when read from one

    def __str__(self) -> str:
        lines = [f"{self.source or 'EasyEdit hyper-parameters'} as editledger's {self.method}: "
                 + ", ".join(f"{k}={v!r}" for k, v in self.values.items())]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def is_easyedit_file(path: str | Path) -> bool:
    """A YAML file is EasyEdit's (editledger's own hyper-parameter files are JSON)."""
    return Path(path).suffix.lower() in (".yaml", ".yml")


def read_config(path: str | Path) -> dict:
    """The dictionary EasyEdit builds from a hyper-parameter file (YAML, or JSON with alg_name)."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise InputError(f"hyper-parameter file {p} not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read hyper-parameter file {p} ({e.__class__.__name__}); give an EasyEdit "
                         "YAML file") from None
    if len(text) > MAX_FILE_CHARS:
        raise InputError(f"hyper-parameter file {p} is {len(text):,} characters long; EasyEdit's are a few "
                         "hundred (is it the file you meant?)")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            # an alias can make a few lines stand for billions of values: EasyEdit's files use none
            if any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=yaml.SafeLoader)):
                raise InputError(f"hyper-parameter file {p} uses YAML aliases (*name); write the values out")
            data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise InputError(f"hyper-parameter file {p} cannot be read as {'JSON' if p.suffix.lower() == '.json' else 'YAML'} "
                         f"({str(e).splitlines()[0][:160]}); fix it") from None
    if not isinstance(data, dict):
        raise InputError(f"hyper-parameter file {p} must hold a mapping of name: value, like EasyEdit's "
                         "hparams/ROME/gpt-j-6B.yaml")
    return data


def _as_float(v: Any) -> Any:
    """EasyEdit's construct_float_from_scientific_notation, for one top-level value."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _module(name: Any) -> Any:
    """A module template as a module name: EasyEdit's FT files sometimes name the weight itself."""
    return name[:-len(".weight")] if isinstance(name, str) and name.endswith(".weight") else name


def translate(config: dict, *, method: str | None = None, spec: Any = None, source: str = "") -> Translation:
    """Turn EasyEdit's hyper-parameter dictionary for ROME, MEMIT or FT into editledger's values.
    ``method``: the method the replay uses (the file's alg_name must agree); ``spec``: the model
    spec, against which module names and layers are checked (skipped, with a note, without one).
    Raises InputError naming every key it cannot honour."""
    where = source or "the EasyEdit hyper-parameters"
    cfg = {k: _as_float(v) for k, v in config.items()}
    alg = cfg.get("alg_name")
    if not isinstance(alg, str) or alg.upper() not in METHODS:
        raise InputError(f"{where}: alg_name is {alg!r}; editledger reads EasyEdit's ROME, MEMIT and FT files "
                         "(alg_name ROME, MEMIT or FT)")
    m = METHODS[alg.upper()]
    if method is not None and method.lower() != m:
        raise InputError(f"{where} is for {alg} (alg_name), but the replay's method is {method!r}; use "
                         f"method {m!r} or a {method.upper()} file")
    values: dict[str, Any] = {}
    notes: list[str] = []
    refused: list[str] = []
    n_layers = int(getattr(spec, "n_layers", 0) or 0)

    def check(key: str, ok: bool, wants: str) -> None:
        if not ok:
            refused.append(f"{key}: {cfg[key]!r} (editledger {wants})")

    for key, v in cfg.items():
        if key == "alg_name":
            continue
        if key in MAPPED[m]:
            target = MAPPED[m][key]
            if key == "layers" and target == "layer":
                if not (isinstance(v, list) and len(v) == 1):
                    refused.append(f"layers: {v!r} ({m.upper()} edits one layer in editledger: give one, e.g. [5])")
                    continue
                v = v[0]
            if key == "objective_optimization" and v not in ("target_new", "prompt_last"):
                refused.append(f"{key}: {v!r} (EasyEdit's FT knows target_new and prompt_last)")
                continue
            if m == "ft" and key == "norm_constraint" and type(v) is not float:
                # ft_main constrains only `if type(hparams.norm_constraint) is float` (false, 0, 1: none)
                notes.append(f"norm_constraint: {v!r} is not a float, so EasyEdit does not constrain the change; "
                             "editledger's norm_constraint is float32's largest value, a bound no change reaches")
                v = FLOAT32_MAX
            values[target] = v
        elif key in ELSEWHERE:
            notes.append(f"{key}: {v!r} not used here; {ELSEWHERE[key]}")
        elif key == "fact_token":
            check(key, v == "subject_last", "edits at the subject's last token: use subject_last")
        elif key == "v_loss_layer" and m in ("rome", "memit"):
            if n_layers:
                check(key, v == n_layers - 1, f"computes the loss at the model's output, after layer {n_layers - 1}: "
                                              f"use {n_layers - 1}")
            else:
                notes.append(f"v_loss_layer: {v!r} not checked (the model's depth is unknown here); editledger "
                             "computes the loss at the model's output")
        elif key in ("rewrite_module_tmp", "layer_module_tmp", "mlp_module_tmp"):
            if spec is None:
                notes.append(f"{key}: {v!r} not checked (no model given); editledger edits the model spec's modules")
                continue
            want = {"rewrite_module_tmp": spec.rewrite_module, "layer_module_tmp": spec.layer_module,
                    "mlp_module_tmp": spec.rewrite_module.rsplit(".", 1)[0]}[key]
            got = _module(v) if key == "rewrite_module_tmp" else v
            check(key, got == want, f"edits {spec.name}'s {want!r}; this file is for another model")
        elif key == "mom2_dtype":
            check(key, v == "float32", "keeps second-moment statistics in float32")
        elif key == "layer_selection" and m == "memit":
            check(key, v == "all", "spreads MEMIT's update over every layer in layers: use all")
        elif key == "mom2_adjustment" and m == "memit":
            check(key, v is True, "always uses the second-moment statistics in MEMIT: use true")
        elif key in ("weight_decay", "kl_factor") and m == "ft":
            check(key, v == 0, f"fine-tunes without {'weight decay' if key == 'weight_decay' else 'a KL term'}: use 0")
        else:
            refused.append(f"{key}: unknown to EasyEdit's {alg} hyper-parameters")
    if refused:
        raise InputError(f"{where}: {len(refused)} key(s) editledger cannot honour: " + "; ".join(refused)
                         + ". Change them, or drop the file and pass editledger hyper-parameters (JSON)")
    notes += CODE_NOTES[m]
    return Translation(method=m, values=values, notes=notes, source=str(source))


def load(path: str | Path, *, method: str | None = None, spec: Any = None) -> Translation:
    """``translate`` of an EasyEdit hyper-parameter file."""
    return translate(read_config(path), method=method, spec=spec, source=str(path))
