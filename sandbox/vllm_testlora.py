"""A TEST LoRA ADAPTER for the sandbox's TEST MODEL (sandbox/vllm_testmodel.py): PEFT's on-disk format
(``adapter_config.json`` and ``adapter_model.safetensors``), written without PEFT, with seeded random
weights on every attention projection, so that vLLM serves it beside the base model as a LoRA module.
Like the model it adapts, it makes nonsense; what it exercises is vLLM's LoRA path (loading,
batching adapters, the per-request ``model``) and the tool's LoRA mixes.

Run with the vLLM venv's python (it has torch and safetensors):

    python vllm_testlora.py MODEL_DIR OUT_DIR [--rank 8] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import torch
    from safetensors.torch import save_file
    cfg = json.loads((a.model / "config.json").read_text())
    width, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or width // heads
    out_dims = {"q_proj": heads * head_dim, "k_proj": kv * head_dim, "v_proj": kv * head_dim, "o_proj": width}
    in_dims = {"q_proj": width, "k_proj": width, "v_proj": width, "o_proj": heads * head_dim}
    gen = torch.Generator().manual_seed(a.seed)
    tensors = {}
    for layer in range(layers):
        for proj in TARGETS:
            stem = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            tensors[f"{stem}.lora_A.weight"] = torch.randn(a.rank, in_dims[proj], generator=gen) * 0.02
            tensors[f"{stem}.lora_B.weight"] = torch.randn(out_dims[proj], a.rank, generator=gen) * 0.02
    a.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(a.out / "adapter_model.safetensors"))
    (a.out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(a.model), "r": a.rank,
        "lora_alpha": 2 * a.rank, "lora_dropout": 0.0, "bias": "none", "target_modules": list(TARGETS),
        "fan_in_fan_out": False, "modules_to_save": None, "inference_mode": True}, indent=2))
    print(f"LoRA adapter of rank {a.rank} on {layers} layers' {', '.join(TARGETS)}: {a.out}")


if __name__ == "__main__":
    main()
