"""A time and memory model of ROME and MEMIT: FLOPs of the key computation, the value (or target)
optimisation and the solve, and the bytes of the second-moment statistics, from a model's shapes and the
edit's batch. ``docs/performance.md`` derives it; ``editledger bench`` checks it against the embedded
model's measured split and scales it to GPT-J-6B.

Conventions: a multiply-add is 2 FLOPs; a backward pass through a frozen layer costs what its forward does
(input gradients only: no weight gradients are formed); attention scores are counted (they matter little at
prompt lengths); norms and activations are not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Shapes:
    name: str
    d: int              # hidden size
    f: int              # MLP inner size: the width of ROME's key, the side of C
    layers: int
    vocab: int
    q: int              # query (and output projection) width
    kv: int             # key / value projection width
    gated: bool         # gate + up + down (Llama, Gemma) or fc_in + fc_out (GPT-J, GPT-2)

    @classmethod
    def of(cls, name: str, cfg: dict) -> "Shapes":
        """From a Hugging Face config dict (GPT-J, GPT-2, Llama, Gemma 3 names)."""
        d = cfg.get("hidden_size") or cfg.get("n_embd")
        f = cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * d
        heads = cfg.get("num_attention_heads") or cfg.get("n_head")
        hd = cfg.get("head_dim") or d // heads
        kvh = cfg.get("num_key_value_heads") or heads
        gated = cfg.get("model_type") not in ("gptj", "gpt2")
        return cls(name, d, f, cfg.get("num_hidden_layers") or cfg.get("n_layer"), cfg["vocab_size"],
                   heads * hd, kvh * hd, gated)

    @property
    def layer_params(self) -> int:
        mlp = (3 if self.gated else 2) * self.d * self.f
        return self.d * self.q * 2 + self.d * self.kv * 2 + mlp

    def token_layer_flops(self, context: int) -> float:
        """Forward FLOPs of one token through one block attending to ``context`` tokens."""
        return 2 * self.layer_params + 4 * context * self.q


GPTJ_6B = Shapes("gpt-j-6b", d=4096, f=16384, layers=28, vocab=50400, q=4096, kv=4096, gated=False)


@dataclass(frozen=True)
class Batch:
    rows: int           # rewrite rows (context prefixes) + 1 KL row
    width: int          # padded tokens per row
    prefix: int         # columns before the subject's last token (computed once)
    positions: int      # lm-head positions per row (target tokens)
    steps: int          # optimisation steps actually taken (early stop)


def rome(s: Shapes, layer: int, b: Batch, factor_cached: bool = False) -> dict:
    """FLOPs of one ROME request and the bytes it keeps, by part."""
    suffix = b.width - b.prefix
    ctx = b.width
    keys = b.rows * (b.prefix * s.layers + suffix * layer) * s.token_layer_flops(ctx)       # prefix cache + frozen blocks
    per_step = (2 * b.rows * suffix * (s.layers - layer) * s.token_layer_flops(ctx)          # body, forward + backward
                + 2 * 2 * s.d * s.vocab * b.rows * b.positions)                               # lm head, forward + backward
    solve = (0 if factor_cached else s.f ** 3 / 3 * 2) + 2 * s.f ** 2 * 2 + 2 * s.d * s.f    # Cholesky, two triangular solves, W k
    return {"keys_flop": keys, "value_flop_per_step": per_step, "value_flop": per_step * (b.steps + 1),
            "solve_flop": solve, "stats_bytes_fp32": s.f ** 2 * 4, "solve_bytes_fp64": 2 * s.f ** 2 * 8,
            "delta_bytes": (s.d + s.f) * 4, "weights_bytes_fp16": s.layers * s.layer_params * 2 + s.vocab * s.d * 2}


def memit(s: Shapes, layers: list[int], n: int, b: Batch) -> dict:
    """FLOPs of one MEMIT batch of ``n`` requests over ``layers`` (targets at the last one), and its bytes."""
    last = max(layers)
    suffix = b.width - b.prefix
    ctx = b.width
    keys_pass = b.rows * b.width * s.layers * s.token_layer_flops(ctx)          # one full pass per request and layer
    per_step = (2 * b.rows * suffix * (s.layers - last) * s.token_layer_flops(ctx)
                + 2 * 2 * s.d * s.vocab * b.rows * b.positions)
    m = len(layers)
    return {"targets_flop": n * per_step * (b.steps + 1) + n * b.rows * (b.prefix * s.layers + suffix * last)
            * s.token_layer_flops(ctx),
            "keys_flop": n * m * keys_pass,
            "solve_flop": m * (s.f ** 3 / 3 * 2 + 2 * s.f ** 2 * n * 2 + 2 * n * s.f ** 2),  # (lam C + K K^T) each layer
            "solve_flop_woodbury": m * (2 * s.f ** 2 * n * 2 + 2 * n * n * s.f),              # chol(C) cached
            "stats_bytes_fp32": m * s.f ** 2 * 4, "delta_bytes": m * (s.d + s.f) * n * 4}


def to_dict(x) -> dict:
    return asdict(x)
