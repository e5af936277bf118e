"""A time and memory model of ROME and MEMIT: FLOPs of the key computation, the value (or target)
optimisation and the solve, and the bytes of the statistics and the solve, from a model's shapes and the
edit's batch. ``docs/performance.md`` derives it; tests/test_bench.py checks the FLOPs against torch's own
count of a real edit (tiny-gptj, every matrix product counted); ``editledger bench`` checks the time it
predicts against the embedded model's measured edits and scales it to GPT-J-6B.

What the code does, and so what is counted (simulator/editors/value.py, common.SuffixBatch):

* keys: the prompt up to the subject's last token (``prefix`` columns) runs once through every block
  (kept as keys and values); the rest (``suffix`` columns) runs once through the blocks below the edit
  point, whose outputs are then replayed;
* each optimisation step: a forward pass of the suffix through the blocks from the edit point up and the
  lm head at the target positions, and a backward pass for the input gradients only (no weight is
  trained) from the lm head down to the block above the edit point; the loop makes ``steps`` steps and
  one more forward pass (the last loss, or the early stop);
* the solve in float64: a Cholesky factor of C (cached across ROME edits: C is the same), two triangular
  solves, W k.

Conventions: a multiply-add is 2 FLOPs; attention is eager-shaped (every query against every key of its
pass, QK^T and AV); norms, activations and the softmax are not counted (nor are they by torch's counter).
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
        """Weights of one block's matrices (q, k, v, o projections and the MLP)."""
        mlp = (3 if self.gated else 2) * self.d * self.f
        return self.d * self.q * 2 + self.d * self.kv * 2 + mlp

    @property
    def params(self) -> int:
        """Matrix weights of the whole model, embeddings and lm head counted once each (untied)."""
        return self.layers * self.layer_params + 2 * self.vocab * self.d

    def token_layer_flops(self, context: int, backward: bool = False) -> float:
        """FLOPs of one token through one block attending to ``context`` tokens. Backward (input gradients
        only): the projections cost what they cost forward; attention twice (dQ, dK from the scores; dP, dV
        from the output)."""
        attention = 4 * context * self.q
        return 2 * self.layer_params + (2 * attention if backward else attention)

    def head_flops(self, positions: int) -> float:
        return 2 * self.d * self.vocab * positions


GPTJ_6B = Shapes("gpt-j-6b", d=4096, f=16384, layers=28, vocab=50400, q=4096, kv=4096, gated=False)


@dataclass(frozen=True)
class Batch:
    rows: int           # rewrite rows (context prefixes) + 1 KL row
    width: int          # columns of the suffix-aligned batch (common.SuffixBatch)
    prefix: int         # columns before the subject's last token (computed once)
    positions: int      # lm-head positions per row (target tokens)
    steps: int          # optimisation steps actually taken (early stop)
    plain_width: int = 0  # columns of the plain (right-padded) batch: MEMIT's key passes; 0: ``width``


def value(s: Shapes, layer: int, b: Batch, dtype_bytes: int = 4) -> dict:
    """FLOPs of one value (ROME's v*, MEMIT's z) optimised at the output of block ``layer``'s MLP or of
    the block itself: its keys part (prefix cache, frozen blocks) and its optimisation loop; and the bytes
    of weights every pass reads (each pass reads every matrix it uses once: with a few dozen tokens per
    pass this, not the FLOPs, bounds the time on a CPU and on a GPU alike)."""
    suffix = b.width - b.prefix
    keys = b.rows * (b.prefix * s.layers * s.token_layer_flops(b.prefix)
                     + suffix * layer * s.token_layer_flops(b.width))
    head = s.head_flops(b.rows * b.positions)
    fwd = b.rows * suffix * (s.layers - layer) * s.token_layer_flops(b.width) + head
    bwd = b.rows * suffix * (s.layers - layer - 1) * s.token_layer_flops(b.width, backward=True) + head
    blk, hd = s.layer_params * dtype_bytes, s.d * s.vocab * dtype_bytes
    keys_bytes = (s.layers + layer) * blk                 # the prefix pass, then the suffix below the edit point
    fwd_bytes, bwd_bytes = (s.layers - layer) * blk + hd, (s.layers - layer - 1) * blk + hd
    return {"keys_flop": keys, "forward_flop": fwd, "backward_flop": bwd,
            "value_flop_per_step": fwd + bwd, "value_flop": fwd * (b.steps + 1) + bwd * b.steps,
            "keys_weight_bytes": keys_bytes, "forward_weight_bytes": fwd_bytes, "backward_weight_bytes": bwd_bytes,
            "value_weight_bytes": keys_bytes + fwd_bytes * (b.steps + 1) + bwd_bytes * b.steps}


def roofline_s(v: dict, steps: int, flops_per_s: float, bytes_per_s: float) -> float:
    """Seconds of ``value``'s passes (``steps`` steps) if each pass takes the longer of its FLOPs at
    ``flops_per_s`` and its weight reads at ``bytes_per_s``: a lower bound, no pass runs faster."""
    def t(part: str) -> float:
        return max(v[f"{part}_flop"] / flops_per_s, v[f"{part}_weight_bytes"] / bytes_per_s)
    return t("keys") + (steps + 1) * t("forward") + steps * t("backward")


def rome(s: Shapes, layer: int, b: Batch, factor_cached: bool = False) -> dict:
    """FLOPs of one ROME request and the bytes it keeps, by part."""
    v = value(s, layer, b)
    chol = 2 * s.f ** 3 / 3
    # Cholesky (unless cached), two triangular solves, W k, and u v^T (the update later requests see)
    solve = (0 if factor_cached else chol) + 2 * s.f ** 2 + 2 * 2 * s.d * s.f
    return {**v, "solve_flop": solve, "cholesky_flop": chol,
            "stats_bytes_fp32": s.f ** 2 * 4, "solve_bytes_fp64": 2 * s.f ** 2 * 8,
            "delta_bytes": (s.d + s.f) * 4, "weights_bytes_fp16": s.params * 2}


def memit(s: Shapes, layers: list[int], n: int, b: Batch) -> dict:
    """FLOPs of one MEMIT batch of ``n`` requests over ``layers`` (targets at the last one), and its bytes.
    Keys: per layer and request one plain forward pass (lm head at one position per row), with the updates
    of the layers below added by hooks (one extra d x f product per token and applied layer)."""
    last = max(layers)
    m = len(layers)
    v = value(s, last, b)
    T = b.plain_width or b.width
    keys = sum(n * b.rows * T * (s.layers * s.token_layer_flops(T) + i * 2 * s.d * s.f) + n * s.head_flops(b.rows)
               for i in range(m))
    chol = m * 2 * s.f ** 3 / 3
    # K K^T, two triangular solves with n right sides, R V^T (the update the layers above see)
    per_layer = 2 * s.f ** 2 * n + 2 * n * s.f ** 2 + 2 * s.d * s.f * n
    return {"targets_flop": n * (v["keys_flop"] + v["value_flop"]), "keys_flop": keys,
            "solve_flop": chol + m * per_layer, "cholesky_flop": chol,
            "solve_flop_woodbury": m * (per_layer + 2 * n * n * s.f),       # if chol(lam C) were cached
            "stats_bytes_fp32": m * s.f ** 2 * 4, "delta_bytes": m * (s.d + s.f) * n * 4}


def to_dict(x) -> dict:
    return asdict(x)
