"""Hyper-parameters: one dataclass per method, defaults commented, per-spec overrides from the registry,
then a JSON file, then explicit overrides (later wins)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ledger.errors import InputError

# Prefixes put in front of the edit prompt so that the key and the new value hold in many contexts
# (ROME samples them from the model; fixed text keeps an edit a pure, replayable function of its inputs).
DEFAULT_CONTEXT_PREFIXES = [
    "", "The following is true. ", "I read this in the news. ", "Here is a short fact. ",
    "In other words, ", "According to the book, ",
]


@dataclass
class ROMEHyperParams:
    layer: int = 5                     # layer whose MLP output projection is rewritten
    v_num_grad_steps: int = 20         # Adam steps for v*
    v_lr: float = 0.5                  # Adam learning rate for the residual delta of v*
    v_weight_decay: float = 0.5        # weight of ||delta||^2 / ||v0||^2 in the loss
    clamp_norm_factor: float = 4.0     # ||delta|| <= clamp_norm_factor * ||v0||
    kl_factor: float = 0.0625          # weight of KL(original || edited) on "{subject} is a"
    kl_prompt: str = "{} is a"         # essence prompt for the KL term
    context_prefixes: list[str] = field(default_factory=lambda: list(DEFAULT_CONTEXT_PREFIXES))
    early_stop_prob: float = 0.9       # stop once every target token has at least this mean probability ...
    early_stop_top1: bool = True       # ... and the first target token is the top prediction
    fast: bool = True                  # run the blocks below the edit once; lm head only where the loss looks
    mom2_adjustment: bool = True       # use C^-1 k (the paper); False: C = identity
    mom2_n_samples: int = 100000       # tokens of the second-moment corpus (the provider may have fewer)
    mom2_lambda: float = 0.0           # ridge: C + lambda * mean(diag C) * I, for small corpora
    seed: int = 0                      # nothing random today; kept for methods that sample


@dataclass
class MEMITHyperParams:
    layers: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7, 8])  # layers the update is spread over
    v_num_grad_steps: int = 25         # Adam steps for each z_i at the last layer
    v_lr: float = 0.5                  # Adam learning rate
    v_weight_decay: float = 0.5        # weight of ||delta||^2 / ||h0||^2
    clamp_norm_factor: float = 0.75    # ||delta|| <= clamp_norm_factor * ||h0||
    kl_factor: float = 0.0625          # weight of the KL essence term
    kl_prompt: str = "{} is a"         # essence prompt for the KL term
    context_prefixes: list[str] = field(default_factory=lambda: list(DEFAULT_CONTEXT_PREFIXES))
    early_stop_prob: float = 0.9       # per request: stop optimising z_i once its targets are this likely
    fast: bool = True                  # run the blocks below the edit once; lm head only where the loss looks
    mom2_update_weight: float = 15000.0  # lambda in (lambda C + K K^T): trust in the preserved keys
    mom2_n_samples: int = 100000       # tokens of the second-moment corpus
    mom2_lambda: float = 0.0           # ridge on C as in ROME
    seed: int = 0


@dataclass
class FTHyperParams:
    layer: int = 5                     # layer whose MLP output projection is fine-tuned (FT-L: one layer)
    num_steps: int = 25                # Adam steps
    lr: float = 5e-4                   # Adam learning rate
    norm_constraint: float = 5e-4      # L-infinity bound on the change of each weight (projected every step)
    early_stop_prob: float = 0.95      # stop when every target token is at least this likely
    seed: int = 0


HPARAMS_CLASSES: dict[str, type] = {"rome": ROMEHyperParams, "memit": MEMITHyperParams, "ft": FTHyperParams}


def load_hparams(method: str, spec: Any = None, path: str | None = None, overrides: dict | None = None):
    """The method's defaults, then ``spec.hparams[method]``, then the JSON file at ``path``, then
    ``overrides``. Unknown keys are an InputError (a typo must not silently fall back to a default)."""
    m = method.lower()
    if m not in HPARAMS_CLASSES:
        raise InputError(f"unknown method {method!r}; known: {', '.join(HPARAMS_CLASSES)}")
    cls = HPARAMS_CLASSES[m]
    values: dict[str, Any] = {}
    if spec is not None:
        values.update(spec.hparams.get(m, {}))
    if path is not None:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as e:
            raise InputError(f"hyper-parameter file {p} not found") from e
        except json.JSONDecodeError as e:
            raise InputError(f"hyper-parameter file {p} is not valid JSON ({e}); fix it or drop --hparams") from e
        if not isinstance(data, dict):
            raise InputError(f"hyper-parameter file {p} must hold a JSON object of name: value")
        values.update(data)
    values.update(overrides or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown {m} hyper-parameters {unknown}; known: {sorted(known)}")
    return cls(**values)


def hparams_to_dict(hp: Any) -> dict[str, Any]:
    """JSON-serialisable form, for the ledger."""
    return asdict(hp)
