"""Models: the spec registry, the loader (no downloads) and the HF-directory export.

    from simulator.models import load_model
    lm = load_model("tiny-gptj")          # or "gemma-3-270m", "smollm2-135m", a HF dir, a .gguf file
    lm.model, lm.tokenizer, lm.spec, lm.fingerprint
"""
from simulator.models.export import export_model_dir
from simulator.models.loading import (LoadedModel, cache_root, default_device_dtype, load_model,
                                      model_fingerprint, verify_fingerprint)
from simulator.models.specs import ModelSpec, get_spec, model_names

__all__ = ["LoadedModel", "ModelSpec", "cache_root", "default_device_dtype", "export_model_dir", "get_spec",
           "load_model", "model_fingerprint", "model_names", "verify_fingerprint"]
