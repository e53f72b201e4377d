"""A TEST MODEL for llama.cpp: a real tokenizer with seeded random weights (it generates nonsense).

llama.cpp's source ships vocabulary-only GGUF files of real tokenizers
(``models/ggml-vocab-llama-spm.gguf``: 32,000 tokens). This copies one's
``tokenizer.*`` keys into a small ``llama`` model whose weights are random but
seeded, so llama-server runs it through its real tokenizer, scheduler, KV cache,
streaming and metrics, with no download. Its size is a parameter: a slower
engine is one setting away.

    python -m sandbox.testmodel VOCAB.gguf OUT.gguf [--layers 2] [--width 64] [--heads 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _field(reader, key):
    f = reader.fields[key]
    from gguf import GGUFValueType
    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    return f.parts[f.data[0]][0].item()


def write_test_model(vocab: Path, out: Path, layers: int = 2, width: int = 64, heads: int = 4,
                     context: int = 4096, seed: int = 1) -> Path:
    import numpy as np
    from gguf import GGUFReader, GGUFWriter
    r = GGUFReader(str(vocab))
    tokens = _field(r, "tokenizer.ggml.tokens")
    n_vocab, n_ff = len(tokens), 4 * width
    rng = np.random.default_rng(seed)

    def weights(*shape):  # numpy shapes are the reverse of GGUF's
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    tmp = out.with_suffix(".tmp")
    w = GGUFWriter(str(tmp), "llama")
    w.add_name("orchestrator test model (random weights, real tokenizer)")
    w.add_block_count(layers)
    w.add_context_length(context)
    w.add_embedding_length(width)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(width // heads)
    w.add_tokenizer_model(_field(r, "tokenizer.ggml.model"))
    if "tokenizer.ggml.pre" in r.fields:
        w.add_tokenizer_pre(_field(r, "tokenizer.ggml.pre"))
    w.add_token_list(tokens)
    w.add_token_scores(_field(r, "tokenizer.ggml.scores"))
    w.add_token_types(_field(r, "tokenizer.ggml.token_type"))
    w.add_bos_token_id(_field(r, "tokenizer.ggml.bos_token_id"))
    w.add_eos_token_id(_field(r, "tokenizer.ggml.eos_token_id"))
    if "tokenizer.ggml.unknown_token_id" in r.fields:
        w.add_unk_token_id(_field(r, "tokenizer.ggml.unknown_token_id"))
    w.add_add_bos_token(bool(_field(r, "tokenizer.ggml.add_bos_token")))
    w.add_add_eos_token(bool(_field(r, "tokenizer.ggml.add_eos_token")))
    w.add_tensor("token_embd.weight", weights(n_vocab, width))
    w.add_tensor("output_norm.weight", np.ones(width, dtype=np.float32))
    w.add_tensor("output.weight", weights(n_vocab, width))
    for i in range(layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(width, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + name + ".weight", weights(width, width))
        w.add_tensor(p + "ffn_norm.weight", np.ones(width, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", weights(n_ff, width))
        w.add_tensor(p + "ffn_up.weight", weights(n_ff, width))
        w.add_tensor(p + "ffn_down.weight", weights(width, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vocab", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    path = write_test_model(a.vocab, a.out, a.layers, a.width, a.heads, seed=a.seed)
    print(f"test model (random weights): {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
