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


def test_gptj_6b_shapes_are_the_real_models():
    """GPT-J-6B built by transformers from its default config (on the meta device: no memory): the cost
    model's matrices are its 2-D parameters, and the whole is its six billion parameters."""
    from transformers import GPTJConfig, GPTJForCausalLM
    with torch.device("meta"):
        model = GPTJForCausalLM(GPTJConfig())
    j = costmodel.GPTJ_6B
    assert costmodel.Shapes.of(j.name, model.config.to_dict()) == j
    assert sum(p.numel() for p in model.parameters() if p.dim() == 2) == j.params
    assert 6.05e9 < sum(p.numel() for p in model.parameters()) < 6.06e9
    assert model.get_submodule("transformer.h.5.mlp.fc_out").weight.shape == (j.d, j.f)


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
    assert s.layer_params == 4 * 4 * 2 + 4 * 4 * 2 + 2 * 4 * 8 == 128
    assert s.token_layer_flops(5) == 2 * 128 + 4 * 5 * 4 == 336
    assert s.token_layer_flops(3) == 256 + 48 and s.token_layer_flops(5, backward=True) == 256 + 160
    # prefix: 2 rows x 3 columns x 3 blocks over 3 keys; suffix: 2 rows x 2 columns x 1 block below the edit
    assert r["keys_flop"] == 2 * 3 * 3 * 304 + 2 * 2 * 1 * 336
    head = 2 * 4 * 10 * 2 * 1
    assert r["forward_flop"] == 2 * 2 * 2 * 336 + head            # blocks 1 and 2, then the lm head
    assert r["backward_flop"] == 2 * 2 * 1 * 416 + head           # block 2 only: the delta enters after block 1's MLP
    assert r["value_flop"] == 3 * r["forward_flop"] + 2 * r["backward_flop"]
    # weights read, fp32: the prefix pass (3 blocks) and the suffix below the edit (1); per forward blocks 1-2
    # and the head; per backward block 2 and the head
    assert r["keys_weight_bytes"] == 4 * 128 * 4 and r["forward_weight_bytes"] == 2 * 128 * 4 + 40 * 4
    assert r["value_weight_bytes"] == 4 * 128 * 4 + 3 * (2 * 128 * 4 + 160) + 2 * (128 * 4 + 160)
    assert costmodel.roofline_s(r, 2, flops_per_s=1.0, bytes_per_s=1e12) == r["keys_flop"] + r["value_flop"]
    assert costmodel.roofline_s(r, 2, flops_per_s=1e12, bytes_per_s=1.0) == r["value_weight_bytes"]
    assert r["solve_flop"] == 8 ** 3 / 3 * 2 + 2 * 64 + 4 * 32
    assert r["stats_bytes_fp32"] == 256 and r["delta_bytes"] == 48
    assert costmodel.rome(s, 1, b, factor_cached=True)["solve_flop"] == 2 * 64 + 4 * 32


def _batch(tiny, hp, req, steps):
    from simulator.editors.common import SuffixBatch, build_rows, pad_id_of
    rows = build_rows(tiny.tokenizer, tiny.spec, req, hp.context_prefixes, hp.kl_prompt, pad_id_of(tiny.tokenizer))
    b = SuffixBatch.of(rows)
    return costmodel.Batch(rows=rows.input_ids.shape[0], width=b.input_ids.shape[1], prefix=b.start,
                           positions=max(len(t) for t in rows.targets), steps=steps,
                           plain_width=rows.input_ids.shape[1])


def test_cost_model_counts_the_flops_torch_counts_in_real_edits(tiny):
    """One ROME edit and one 2-request MEMIT edit on tiny-gptj with eager attention (so that torch's counter
    sees every matrix product, attention's included): the model's FLOPs are exactly the counted ones.
    torch counts matrix-matrix products only: W k (a matrix-vector product), the Cholesky factor and the
    triangular solves are left out of both sides."""
    import copy
    from dataclasses import replace

    from simulator.editors import get_editor, load_hparams
    from simulator.requests import EditRequest
    model = copy.deepcopy(tiny.model)
    model.set_attn_implementation("eager")
    s = costmodel.Shapes.of("tiny", tiny.config["hf_config"])
    reqs = [EditRequest(subject="Eiffel Tower", prompt="The {} is located in the city of", target_new=" Rome"),
            EditRequest(subject="Toyota", prompt="{} was founded in", target_new=" Germany")]
    hp = replace(load_hparams("rome", tiny.spec), mom2_adjustment=False, v_num_grad_steps=6)
    with FlopCounterMode(display=False) as fc:
        res = get_editor("rome").edit(model, tiny.tokenizer, tiny.spec, reqs[:1], hp)
    r = costmodel.rome(s, hp.layer, _batch(tiny, hp, reqs[0], res.diagnostics["requests"][0]["steps"]))
    assert fc.get_total_flops() == r["keys_flop"] + r["value_flop"] + 2 * s.d * s.f       # + u v^T
    hp = replace(load_hparams("memit", tiny.spec), v_num_grad_steps=6)
    with FlopCounterMode(display=False) as fc:
        res = get_editor("memit").edit(model, tiny.tokenizer, tiny.spec, reqs, hp)
    m = [costmodel.memit(s, hp.layers, 1, _batch(tiny, hp, q, d["steps"]))
         for q, d in zip(reqs, res.diagnostics["requests"])]
    n, layers = len(reqs), len(hp.layers)
    solve_mm = layers * (2 * s.f ** 2 * n + 2 * s.d * s.f * n)                              # K K^T, R V^T
    solve_mm += layers * 2 * (2 * n * n * s.f)          # the gain K^T A^-1 K, both halves (health telemetry)
    assert fc.get_total_flops() == sum(x["targets_flop"] + x["keys_flop"] for x in m) + solve_mm


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
