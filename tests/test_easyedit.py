"""EasyEdit in: its edit requests become a stream, its ROME/MEMIT/FT hyper-parameter YAML becomes
editledger's hyper-parameters (every key mapped, checked or refused by name), and a replay of EasyEdit
requests with a ROME YAML ends exactly where the same edits given as a stream file and a JSON file end.

The YAML files below carry the key sets of zjunlp/EasyEdit's hparams/{ROME,MEMIT,FT}/gpt-j-6B.yaml
(the keys of easyeditor/models/{rome,memit,ft}/*_hparams.py), with values chosen for the tests."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

import editledger
from editledger.cli import main
from ledger import Ledger
from ledger.errors import InputError
from simulator.editors import get_editor, load_hparams
from simulator.editors.easyedit_hparams import FLOAT32_MAX, load, translate
from simulator.models.specs import SPECS
from simulator.requests import EditRequest
from simulator.streams import load_stream

GPTJ = SPECS["gpt-j-6b"]

ROME_YAML = """\
alg_name: "ROME"
model_name: "./hugging_cache/gpt-j-6B"
stats_dir: "./data/stats"
device: 1
layers: [5]
fact_token: "subject_last"
v_num_grad_steps: 20
v_lr: 5e-1
v_loss_layer: 27
v_weight_decay: 0.5
clamp_norm_factor: 4
kl_factor: 0.0625
mom2_adjustment: false
context_template_length_params: [[5, 10], [10, 10]]
rewrite_module_tmp: "transformer.h.{}.mlp.fc_out"
layer_module_tmp: "transformer.h.{}"
mlp_module_tmp: "transformer.h.{}.mlp"
attn_module_tmp: "transformer.h.{}.attn"
ln_f_module: "transformer.ln_f"
lm_head_module: "lm_head"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
fp16: false
"""

MEMIT_YAML = """\
alg_name: "MEMIT"
model_name: "./hugging_cache/gpt-j-6B"
stats_dir: "./data/stats"
device: 0
layers: [3, 4, 5, 6, 7, 8]
clamp_norm_factor: 0.75
layer_selection: "all"
fact_token: "subject_last"
v_num_grad_steps: 25
v_lr: 5e-1
v_loss_layer: 27
v_weight_decay: 0.5
kl_factor: 0.0625
mom2_adjustment: true
mom2_update_weight: 15000
rewrite_module_tmp: "transformer.h.{}.mlp.fc_out"
layer_module_tmp: "transformer.h.{}"
mlp_module_tmp: "transformer.h.{}.mlp"
attn_module_tmp: "transformer.h.{}.attn"
ln_f_module: "transformer.ln_f"
lm_head_module: "lm_head"
mom2_dataset: "wikipedia"
mom2_n_samples: 100000
mom2_dtype: "float32"
model_parallel: false
"""

FT_YAML = """\
alg_name: "FT"
model_name: "./hugging_cache/gpt-j-6B"
device: 0
layers: [21]
num_steps: 25
batch_size: 1
max_length: 40
lr: 5e-4
weight_decay: 0
kl_factor: 0
norm_constraint: false
objective_optimization: "prompt_last"
rewrite_module_tmp: "transformer.h.{}.mlp.fc_out.weight"
layer_module_tmp: "transformer.h.{}"
mlp_module_tmp: "transformer.h.{}.mlp"
attn_module_tmp: "transformer.h.{}.attn"
ln_f_module: "transformer.ln_f"
lm_head_module: "lm_head"
model_parallel: false
"""

ENVIRONMENT = {"model_name", "stats_dir", "device", "context_template_length_params", "attn_module_tmp",
               "ln_f_module", "lm_head_module", "mom2_dataset", "model_parallel", "fp16"}


def _yaml(tmp_path, text: str, name: str = "hp.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _edit(text: str, **changes) -> str:
    lines = [ln for ln in text.splitlines() if ln.split(":")[0] not in changes]
    return "\n".join(lines + [f"{k}: {v}" for k, v in changes.items() if v is not None]) + "\n"


# ------------------------------------------------------------------------------------ hyper-parameters
def test_rome_yaml_maps_every_key(tmp_path):
    t = load(_yaml(tmp_path, ROME_YAML), method="rome", spec=GPTJ)
    assert t.method == "rome"
    # v_lr "5e-1" is a string to YAML; EasyEdit's construct_float_from_scientific_notation makes it 0.5
    assert t.values == {"layer": 5, "v_num_grad_steps": 20, "v_lr": 0.5, "v_weight_decay": 0.5,
                        "clamp_norm_factor": 4, "kl_factor": 0.0625, "mom2_adjustment": False,
                        "mom2_n_samples": 100000}
    noted = {n.split(":")[0] for n in t.notes}
    assert ENVIRONMENT <= noted and "early stop" in noted            # a difference in code is said too
    # every key is mapped, noted, or checked (each checked one is refused when wrong: the next test)
    mapped = {"layers", "v_num_grad_steps", "v_lr", "v_weight_decay", "clamp_norm_factor", "kl_factor",
              "mom2_adjustment", "mom2_n_samples"}
    checked = {"alg_name", "fact_token", "v_loss_layer", "rewrite_module_tmp", "layer_module_tmp", "mlp_module_tmp",
               "mom2_dtype"}
    assert set(yaml.safe_load(ROME_YAML)) == mapped | ENVIRONMENT | checked
    hp = load_hparams("rome", GPTJ, str(tmp_path / "hp.yaml"))
    assert (hp.layer, hp.v_lr, hp.mom2_adjustment, hp.clamp_norm_factor) == (5, 0.5, False, 4)
    assert hp.context_prefixes == load_hparams("rome", GPTJ).context_prefixes   # editledger's own, noted


@pytest.mark.parametrize("change, words", [
    ({"fact_token": '"last"'}, "fact_token: 'last'"),
    ({"rewrite_module_tmp": '"transformer.h.{}.mlp.c_proj"'}, "rewrite_module_tmp"),
    ({"layer_module_tmp": '"model.layers.{}"'}, "layer_module_tmp"),
    ({"mlp_module_tmp": '"transformer.h.{}.attn"'}, "mlp_module_tmp"),
    ({"v_loss_layer": 20}, "v_loss_layer: 20"),
    ({"layers": "[4, 5]"}, "layers: [4, 5]"),
    ({"mom2_dtype": '"float16"'}, "mom2_dtype"),
    ({"no_such_key": 1}, "no_such_key: unknown"),
])
def test_rome_yaml_refuses_what_editledger_cannot_honour_by_name(tmp_path, change, words):
    with pytest.raises(InputError, match="cannot honour") as e:
        load_hparams("rome", GPTJ, str(_yaml(tmp_path, _edit(ROME_YAML, **change))))
    assert words in str(e.value) and e.value.exit_code == 2


def test_memit_and_ft_yaml(tmp_path):
    t = load(_yaml(tmp_path, MEMIT_YAML), spec=GPTJ)
    assert t.method == "memit" and t.values == {
        "layers": [3, 4, 5, 6, 7, 8], "clamp_norm_factor": 0.75, "v_num_grad_steps": 25, "v_lr": 0.5,
        "v_weight_decay": 0.5, "kl_factor": 0.0625, "mom2_update_weight": 15000, "mom2_n_samples": 100000}
    for change, words in (({"layer_selection": '"random"'}, "layer_selection"),
                          ({"mom2_adjustment": "false"}, "mom2_adjustment: False")):
        with pytest.raises(InputError, match=words):
            load(_yaml(tmp_path, _edit(MEMIT_YAML, **change)), spec=GPTJ)

    t = load(_yaml(tmp_path, FT_YAML), method="ft", spec=GPTJ)
    # norm_constraint false: ft_main clamps only when it is a float; float32's largest bound changes nothing
    assert t.values == {"layer": 21, "num_steps": 25, "lr": 5e-4, "norm_constraint": FLOAT32_MAX,
                        "objective": "prompt_last"}
    assert {"batch_size", "max_length"} <= {n.split(":")[0] for n in t.notes}
    hp = load_hparams("ft", GPTJ, str(tmp_path / "hp.yaml"))
    assert hp.norm_constraint == FLOAT32_MAX and hp.objective == "prompt_last"
    assert load(_yaml(tmp_path, _edit(FT_YAML, norm_constraint="5e-4")), spec=GPTJ).values["norm_constraint"] == 5e-4
    for change, words in (({"weight_decay": 0.1}, "weight_decay: 0.1"), ({"kl_factor": 0.5}, "kl_factor"),
                          ({"objective_optimization": '"promptz_last"'}, "promptz_last")):
        with pytest.raises(InputError, match=words):
            load(_yaml(tmp_path, _edit(FT_YAML, **change)), spec=GPTJ)


def test_hparams_file_errors(tmp_path):
    with pytest.raises(InputError, match="is for ROME .* method is 'memit'"):
        load_hparams("memit", GPTJ, str(_yaml(tmp_path, ROME_YAML)))
    with pytest.raises(InputError, match="alg_name is 'KN'"):
        load(_yaml(tmp_path, _edit(ROME_YAML, alg_name='"KN"')))
    with pytest.raises(InputError, match="cannot be read as YAML"):
        load(_yaml(tmp_path, "layers: [5\n"))
    with pytest.raises(InputError, match="must hold a mapping"):
        load(_yaml(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(InputError, match="aliases"):          # a few lines can stand for billions of values
        load(_yaml(tmp_path, "alg_name: ROME\na: &x [1, 1, 1]\nlayers: [*x, *x, *x]\n"))
    with pytest.raises(InputError, match="could not determine a constructor|cannot be read as YAML"):
        load(_yaml(tmp_path, "alg_name: !!python/object:os.system echo\n"))   # safe_load: no objects
    # EasyEdit's JSON form (alg_name in it) is translated too; editledger's own JSON is read as it is
    p = tmp_path / "ee.json"
    p.write_text(json.dumps({"alg_name": "ROME", "layers": [1], "v_lr": "5e-1"}))
    assert load_hparams("rome", SPECS["tiny-gptj"], str(p)).v_lr == 0.5
    # without a model the module names cannot be checked: said in a note, not silently passed
    t = translate({"alg_name": "ROME", "rewrite_module_tmp": "x.{}"})
    assert any("not checked" in n for n in t.notes)


def test_ft_prompt_last_is_kmeng01s_loss(tiny):
    """FT-L's objective as kmeng01/rome's baselines/ft/ft_main.py (and EasyEdit's prompt_last) computes
    it: log_softmax of the logits at the prompt's last token, gathered at every target token, negated
    and averaged; target_new teacher-forces instead. Checked on a two-token target, where they differ."""
    req = EditRequest(subject="Statue of Liberty", prompt="The {} is located in the city of", target_new=" New York")
    tok, model = tiny.tokenizer, tiny.model
    p_ids = tok(req.text)["input_ids"]
    t_ids = tok(req.text + req.target_new)["input_ids"][len(p_ids):]
    assert len(t_ids) == 2
    with torch.no_grad():
        logits = model(torch.tensor([p_ids + t_ids])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    prompt_last = float(-logp[len(p_ids) - 1, t_ids].mean())
    teacher = float(-(logp[len(p_ids) - 1, t_ids[0]] + logp[len(p_ids), t_ids[1]]) / 2)
    assert abs(prompt_last - teacher) > 1e-2
    for objective, want in (("prompt_last", prompt_last), ("target_new", teacher)):
        hp = load_hparams("ft", tiny.spec, None, {"objective": objective, "num_steps": 0})
        res = get_editor("ft").edit(model, tok, tiny.spec, [req], hp)
        assert res.diagnostics["losses"][0] == pytest.approx(want, abs=2e-5), objective


# ------------------------------------------------------------------------------------ requests
REQUESTS = dict(
    prompts=["The Taj Mahal is located in the city of", "The Louvre is located in the city of"],
    target_new=["Rome", "Berlin"],
    ground_truth=["Agra", "Paris"],
    subject=["Taj Mahal", "Louvre"],
    rephrase_prompts=["Where is the Taj Mahal? In the city of", "The Louvre stands in the city of"],
    locality_inputs={"neighborhood": {"prompt": ["The Leaning Tower of Pisa is located in the city of",
                                                 "The Burj Khalifa is located in the city of"],
                                      "ground_truth": ["Pisa", "Dubai"]},
                     "Relation_Specificity": {"prompt": ["The Taj Mahal was built by", None],
                                              "ground_truth": ["Shah Jahan", None]}},
    portability_inputs={"Subject_Aliasing": {"prompt": ["The Taj is located in the city of", None],
                                             "ground_truth": [["Rome", "Roma"], None]},
                        "reasoning": {"prompt": [None, "The museum of the Mona Lisa is in the city of"],
                                      "ground_truth": [None, "Berlin"]}},
)

# The same edits written by hand in editledger's stream format (docs/stream-format.md).
STREAM = [
    {"v": 1, "kind": "sequential",
     "requests": [{"subject": "Taj Mahal", "prompt": "The {} is located in the city of", "target_new": " Rome",
                   "target_old": " Agra"}],
     "probes": {"rewrite": [{"prompt": "The Taj Mahal is located in the city of", "target": " Rome", "alt": " Agra"}],
                "paraphrase": [{"prompt": "Where is the Taj Mahal? In the city of", "target": " Rome", "alt": " Agra"}],
                "neighborhood": [{"prompt": "The Leaning Tower of Pisa is located in the city of", "target": " Pisa",
                                  "alt": " Rome"}],
                "attribute": [{"prompt": "The Taj Mahal was built by", "target": " Shah Jahan"}],
                "portability_sr": [{"prompt": "The Taj is located in the city of", "target": " Rome",
                                    "answers": [" Roma"]}]}},
    {"v": 1, "kind": "sequential",
     "requests": [{"subject": "Louvre", "prompt": "The {} is located in the city of", "target_new": " Berlin",
                   "target_old": " Paris"}],
     "probes": {"rewrite": [{"prompt": "The Louvre is located in the city of", "target": " Berlin", "alt": " Paris"}],
                "paraphrase": [{"prompt": "The Louvre stands in the city of", "target": " Berlin", "alt": " Paris"}],
                "neighborhood": [{"prompt": "The Burj Khalifa is located in the city of", "target": " Dubai",
                                  "alt": " Berlin"}],
                "portability_oh": [{"prompt": "The museum of the Mona Lisa is in the city of", "target": " Berlin"}]}},
]


def _without_meta(step: dict) -> dict:
    return {**step, "probes": {s: [{k: v for k, v in it.items() if k != "meta"} for it in items]
                               for s, items in step.get("probes", {}).items()}}


def test_easyedit_requests_become_the_stream(tmp_path):
    s = editledger.stream_from_easyedit(REQUESTS)
    assert s.kind == "sequential" and [_without_meta(st.to_dict()) for st in s.steps] == STREAM
    # EasyEdit's per-edit request dicts (_prepare_requests's shape) give the same stream
    rows = [{"prompt": p, "target_new": t, "ground_truth": g, "subject": sub, "rephrase_prompt": r,
             "locality": {}, "portability": {}}
            for p, t, g, sub, r in zip(REQUESTS["prompts"], REQUESTS["target_new"], REQUESTS["ground_truth"],
                                       REQUESTS["subject"], REQUESTS["rephrase_prompts"])]
    for field, inputs in (("locality", REQUESTS["locality_inputs"]), ("portability", REQUESTS["portability_inputs"])):
        for key, d in inputs.items():
            for i, (p, g) in enumerate(zip(d["prompt"], d["ground_truth"])):
                if p is not None:
                    rows[i][field][key] = {"prompt": p, "ground_truth": g}
    assert editledger.stream_from_easyedit(rows).digest == s.digest
    assert editledger.stream_from_easyedit(REQUESTS, batch_size=2).steps[0].kind == "batch"
    # the CLI writes the same stream
    f = tmp_path / "ee.json"
    f.write_text(json.dumps(REQUESTS))
    assert main(["stream", "import", "--easyedit", str(f), "-o", str(tmp_path / "ee.jsonl")]) == 0
    assert load_stream(tmp_path / "ee.jsonl").digest == s.digest


@pytest.mark.parametrize("change, words", [
    ({"subject": ["Taj Mahal", "Eiffel"]}, "request 1: the subject 'Eiffel' does not occur"),
    ({"subject": None}, "request 0: no subject"),
    ({"target_new": ["Rome"]}, "target_new must have one entry per edit (2), got 1"),
    ({"portability_inputs": {"my_hop": {"prompt": ["a", "b"], "ground_truth": ["x", "y"]}}},
     "portability key 'my_hop' names no editledger probe suite"),
    ({"target_neg": ["x", "y"]}, "unknown argument(s) ['target_neg']"),
])
def test_easyedit_requests_refused_by_name(change, words):
    with pytest.raises(InputError) as e:
        editledger.stream_from_easyedit({**REQUESTS, **change})
    assert words in str(e.value)


def test_easyedit_replay_matches_the_same_edits_as_a_stream_file(tmp_path):
    """EasyEdit's requests and a ROME YAML (tiny-gptj's layers), replayed through the API, end exactly
    where the hand-written stream file and JSON hyper-parameters end, replayed through the CLI."""
    tiny_yaml = _edit(ROME_YAML, layers="[1]", v_loss_layer=3, v_weight_decay="1e-3", clamp_norm_factor=20)
    y = _yaml(tmp_path, tiny_yaml)
    stream_file = tmp_path / "same.jsonl"
    stream_file.write_text("".join(json.dumps(s) + "\n" for s in STREAM))
    hp_json = tmp_path / "same.json"
    hp_json.write_text(json.dumps({"layer": 1, "v_num_grad_steps": 20, "v_lr": 0.5, "v_weight_decay": 0.001,
                                   "clamp_norm_factor": 20, "kl_factor": 0.0625, "mom2_adjustment": False,
                                   "mom2_n_samples": 100000}))
    db = tmp_path / "l.db"
    with editledger.open(db) as led:
        a = led.replay(REQUESTS, model="tiny-gptj", method="rome", hparams=str(y), device="cpu",
                       general="none", progress=False)
    assert main(["--db", str(db), "replay", str(stream_file), "--model", "tiny-gptj", "--method", "rome",
                 "--hparams", str(hp_json), "--general", "none", "--device", "cpu"]) == 0
    with Ledger.open(str(db)) as led:
        b = max(r.id for r in led.runs())
        ra, rb = led.run(a), led.run(b)
        assert ra.status == rb.status == "done" and ra.hparams == rb.hparams
        va = [v for v in led.versions(a) if v.kind == "edit"]
        vb = [v for v in led.versions(b) if v.kind == "edit"]
        assert len(va) == len(vb) == 2
        suites = set()
        for x, y_ in zip(va, vb):
            assert x.tensor_fingerprints == y_.tensor_fingerprints
            pa = sorted((p.suite, p.metric, p.against, p.value) for p in led.probes(x.id))
            pb = sorted((p.suite, p.metric, p.against, p.value) for p in led.probes(y_.id))
            assert pa == pb
            suites |= {s for s, *_ in pa}
        assert {"rewrite", "paraphrase", "neighborhood", "attribute", "portability_sr", "portability_oh"} <= suites
