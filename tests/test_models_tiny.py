"""tiny-gptj and the loader: determinism, tokenizer, registry, errors, export round trip."""
from __future__ import annotations

import pytest
import torch

from ledger.errors import InputError
from simulator.models import (export_model_dir, get_spec, load_model, model_fingerprint, model_names,
                              verify_fingerprint)
from simulator.models.tiny import build_tiny_tokenizer

PROMPTS = ["The Eiffel Tower is located in the city of", "Danny Davis plays the position of",
           "The mother tongue of Barack Obama is", "zzq unknown wörds, 42!"]


def test_tiny_is_deterministic(tiny):
    again = load_model("tiny-gptj", device="cpu", dtype=torch.float32, progress=False)
    assert again.fingerprint == tiny.fingerprint == model_fingerprint(tiny.model)
    assert len(tiny.fingerprint) == 64
    assert tiny.spec.name == "tiny-gptj" and tiny.spec.arch == "gptj"
    assert tiny.config["n_layers"] == 4 and tiny.config["arch"] == "gptj"
    # the global RNG is left alone by the seeded init
    torch.manual_seed(0)
    a = torch.rand(3)
    torch.manual_seed(0)
    load_model("tiny-gptj", device="cpu", progress=False)
    assert torch.equal(a, torch.rand(3))


def test_tiny_tokenizer_words_and_bytes():
    tok1, tok2 = build_tiny_tokenizer(), build_tiny_tokenizer()
    for p in PROMPTS:
        ids = tok1(p)["input_ids"]
        assert ids == tok2(p)["input_ids"]
        assert tok1.decode(ids) == p
    ids = tok1("The Eiffel Tower is located in the city of")["input_ids"]
    assert tok1.convert_ids_to_tokens(ids) == ["The", "ĠEiffel", "ĠTower", "Ġis", "Ġlocated", "Ġin", "Ġthe",
                                               "Ġcity", "Ġof"]
    # " Rome" is one token and differs from "Rome"; target ids = tokens(prompt+target) - tokens(prompt)
    assert len(tok1(" Rome")["input_ids"]) == 1 and tok1(" Rome")["input_ids"] != tok1("Rome")["input_ids"]
    assert tok1("The city of Rome")["input_ids"][-1] == tok1(" Rome")["input_ids"][0]


def test_fingerprint_sees_one_element(tiny):
    import copy
    m = copy.deepcopy(tiny.model)
    w = m.transformer.h[1].mlp.fc_out.weight
    with torch.no_grad():
        w[3, 5] = torch.nextafter(w[3, 5], torch.tensor(1.0))
    assert model_fingerprint(m) != tiny.fingerprint
    verify_fingerprint(tiny)  # the shared fixture is untouched


def test_registry():
    names = model_names()
    for n in ("tiny-gptj", "gemma-3-270m", "smollm2-135m", "gpt-j-6b", "gpt2-xl"):
        assert n in names
    gptj = get_spec("gpt-j-6b")
    assert gptj.rewrite_weight(5) == "transformer.h.5.mlp.fc_out.weight"
    assert gptj.rome_layer == 5 and gptj.memit_layers == (3, 4, 5, 6, 7, 8)
    assert get_spec("gpt2-xl").weight_transposed and not gptj.weight_transposed
    assert get_spec("gemma-3-270m").rewrite_module == "model.layers.{}.mlp.down_proj"
    assert get_spec("llama").arch == "llama"
    assert get_spec("smollm2-135m").prompt_prefix


def test_unknown_model_lists_names(tmp_path):
    with pytest.raises(InputError, match="gemma-3-270m") as e:
        load_model("no-such-model", progress=False)
    assert "path" in str(e.value)
    with pytest.raises(InputError):
        get_spec("no-such-arch")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError):
        load_model(str(tmp_path / "x.txt"), progress=False)
    with pytest.raises(InputError, match="config.json"):
        load_model(str(tmp_path), progress=False)


def test_export_round_trip(tiny, tmp_path):
    name = tiny.spec.rewrite_weight(1)
    sd = tiny.model.state_dict()
    new = sd[name] + 0.01
    out = export_model_dir(tiny.model, tiny.tokenizer, {name: new}, tmp_path / "edited")
    assert model_fingerprint(tiny.model) == tiny.fingerprint, "export must leave the model as it was"
    back = load_model(str(out), device="cpu", dtype=torch.float32, progress=False)
    assert back.spec.arch == "gptj" and back.spec.rewrite_module == tiny.spec.rewrite_module
    sd2 = back.model.state_dict()
    assert torch.equal(sd2[name], new)
    for k in sd:
        if k != name:
            assert torch.equal(sd2[k], sd[k]), k
    assert back.tokenizer("The Eiffel Tower")["input_ids"] == tiny.tokenizer("The Eiffel Tower")["input_ids"]
    with pytest.raises(InputError, match="not empty"):
        export_model_dir(tiny.model, tiny.tokenizer, {}, out)
