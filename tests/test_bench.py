"""The bench's pieces that can be checked without timing anything: the cost model against parameter counts
and FLOPs counted by torch, the figures' statistics and goals, the markdown, the demo output parser."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from editledger.bench import costmodel
from editledger.bench.demo import _SPLIT
from editledger.bench.figures import Figure, Section
from editledger.bench.table import markdown


def test_shapes_count_the_parameters_of_a_real_block(tiny):
    s = costmodel.Shapes.of("tiny", tiny.config["hf_config"])
    blk = tiny.model.transformer.h[0]
    assert s.layer_params == sum(p.numel() for p in blk.parameters() if p.dim() == 2)


def test_shapes_of_a_gated_model():
    from transformers import Gemma3TextConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3ForCausalLM
    cfg = Gemma3TextConfig(vocab_size=128, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=16)
    model = Gemma3ForCausalLM(cfg)
    s = costmodel.Shapes.of("g", cfg.to_dict())
    assert (s.q, s.kv, s.gated) == (64, 16, True)
    assert s.layer_params == sum(p.numel() for p in model.model.layers[0].parameters() if p.dim() == 2)


def test_gptj_6b_has_six_billion_parameters():
    j = costmodel.GPTJ_6B
    total = j.layers * j.layer_params + 2 * j.vocab * j.d         # blocks + untied embeddings and lm head
    assert 6.0e9 < total < 6.1e9                                 # GPT-J-6B: 6,053,381,344 parameters
    assert costmodel.Shapes.of("gptj", {"model_type": "gptj", "n_embd": 4096, "n_layer": 28, "n_head": 16,
                                        "vocab_size": 50400}) == costmodel.GPTJ_6B.__class__(
        "gptj", 4096, 16384, 28, 50400, 4096, 4096, False)


def test_forward_flops_match_torchs_count(tiny):
    """Linear layers: the model's 2 x params per token and layer is what torch counts (it leaves sdpa out)."""
    s = costmodel.Shapes.of("tiny", tiny.config["hf_config"])
    ids = torch.randint(0, s.vocab, (3, 10))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        tiny.model.base_model(input_ids=ids)
    assert fc.get_total_flops() == 3 * 10 * s.layers * (s.token_layer_flops(0))


def test_rome_model_by_hand():
    s = costmodel.Shapes("t", d=4, f=8, layers=3, vocab=10, q=4, kv=4, gated=False)
    b = costmodel.Batch(rows=2, width=5, prefix=3, positions=1, steps=2)
    r = costmodel.rome(s, layer=1, b=b)
    per_tok = 2 * (4 * 4 * 2 + 4 * 4 * 2 + 2 * 4 * 8) + 4 * 5 * 4      # 2 x 128 params + attention over 5 tokens
    assert s.token_layer_flops(5) == per_tok == 336
    assert r["keys_flop"] == 2 * (3 * 3 + 2 * 1) * 336
    assert r["value_flop_per_step"] == 2 * 2 * 2 * (3 - 1) * 336 + 4 * 4 * 10 * 2
    assert r["value_flop"] == 3 * r["value_flop_per_step"]
    assert r["solve_flop"] == 8 ** 3 / 3 * 2 + 4 * 64 + 2 * 4 * 8
    assert r["stats_bytes_fp32"] == 256 and r["delta_bytes"] == 48
    assert costmodel.rome(s, 1, b, factor_cached=True)["solve_flop"] == 4 * 64 + 64


def test_figure_statistics_and_goals():
    f = Figure("rome edit", "s", [3.0, 1.0, 2.0, 10.0, 1.5], goal="<= 2")
    assert (f.value, f.lo, f.hi) == (2.0, 1.0, 10.0) and f.met() is True
    assert Figure("x", "x", [4.0], goal="<= 3").met() is False
    assert Figure("x", "MB/s", [4.0], goal=">= 3").met() is True and Figure("x", "s", [1.0]).met() is None


def test_markdown_says_by_how_much_a_goal_is_missed():
    sec = Section("checkout", "Checkout", peak_rss_mb=512.0)
    sec.add(Figure("checkout, verified", "x", [9.0, 12.0, 6.0], goal="<= 3"), Figure("copy", "ms", [1.0]))
    md = markdown({"quick": True, "sections": [sec.to_dict()],
                   "machine": {"date": "d", "cores": 2, "cpu_model": "cpu", "memory_gib": 8, "torch": "2",
                               "torch_threads": 2, "wait_policy": "PASSIVE", "wait_policy_in_force": True,
                               "load_average_1m": 0.5}})
    assert "| checkout, verified | 9.00 x | 6.00 | 12.0 | 3 | <= 3 x: **missed** (3.0x over) | 512 MB |" in md
    assert "### Checkout" in md and "2 cores (cpu)" in md


def test_demo_output_is_parsed():
    line = "run 1: done, 12 steps in 151 s (load 41 s, statistics 38 s, edits 30 s, probes 35 s, ledger 0.7 s)"
    assert [float(x) for x in _SPLIT.search(line).groups()] == [151, 41, 38, 30, 35, 0.7]
