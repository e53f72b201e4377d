"""A TEST MODEL for vLLM: a real trained tokenizer, a chat template and seeded random weights.

No hub download: a byte-level BPE tokenizer (``tokenizers``) is trained on text
that is on every machine (the Python standard library's own sources, read in a
fixed order, so the same Python gives the same vocabulary) and on the synthetic
dataset's words (``bench/datasets.py``), so that, as with the usual tokenizers,
each of those common English words is one token and a synthetic prompt of N
words is N tokens: the tool's client and the reference clients (whose random
prompts are N tokens of this tokenizer) then send the same lengths. Wrapped as a
``PreTrainedTokenizerFast`` with a chat template, and saved beside a
``LlamaForCausalLM`` whose weights are random but seeded. vLLM serves it
through its real tokenizer, scheduler, KV cache, streaming and metrics; the
text it generates is nonsense.

The CPU attention kernels of vLLM need a head dimension of 32, 64, 80 or more
(head_dim 16 passes /health, then the first request kills the engine), so
``width / heads`` is checked here rather than discovered at the first request.

Run with the vLLM venv's python (it has torch, transformers and tokenizers):

    python vllm_testmodel.py OUT_DIR [--layers 2] [--width 128] [--heads 4] [--vocab 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256)
# every text of the stdlib's that is plain prose or code; sorted, so the corpus is the same on each run
CORPUS_MODULES = ("argparse", "textwrap", "json/__init__", "json/decoder", "json/encoder", "string", "random",
                  "statistics", "shlex", "dataclasses", "pathlib", "heapq", "bisect", "fractions", "difflib")
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
SPECIAL = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]


def corpus(words: list[str]) -> list[str]:
    lib = Path(argparse.__file__).parent
    texts = [(lib / f"{m}.py").read_text() for m in CORPUS_MODULES if (lib / f"{m}.py").exists()]
    if not texts:
        raise SystemExit(f"no corpus text found under {lib}")
    # each word often enough, after a space, to be merged into one token of its own
    return texts + [" ".join(words)] * 200


def dataset_words() -> list[str]:
    """The synthetic dataset's words, read from the tool's own module beside this one (no import: this runs
    in vLLM's venv, without the tool installed)."""
    import ast
    src = Path(__file__).resolve().parents[1] / "orchestrator" / "bench" / "datasets.py"
    for node in ast.parse(src.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "WORDS":
            return ast.literal_eval(node.value.func.value).split()   # WORDS = ("...").split()
    raise SystemExit(f"{src}: no WORDS")


def write_test_model(out: Path, layers: int = 2, width: int = 128, heads: int = 4, vocab: int = 1000,
                     context: int = 2048, seed: int = 1) -> Path:
    head_dim, rem = divmod(width, heads)
    if rem or head_dim not in CPU_HEAD_DIMS:
        raise SystemExit(f"width {width} / heads {heads} gives head_dim {width / heads:g}: vLLM's CPU attention "
                         f"needs one of {', '.join(map(str, CPU_HEAD_DIMS))}")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    words = dataset_words()
    tok.train_from_iterator(corpus(words), trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=context)
    fast.chat_template = CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    split = [w for w in words if len(fast.encode(" " + w, add_special_tokens=False)) != 1]
    if split:
        raise SystemExit(f"these dataset words are not one token each: {', '.join(split[:10])} (raise --vocab)")

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=width, intermediate_size=4 * width,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=context, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, tie_word_embeddings=False)
    config.dtype = torch.float32   # --dtype auto serves it as float32
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    # what it is, for a person finding the folder
    (out / "TEST-MODEL.json").write_text(json.dumps({
        "what": "sandbox test model: trained BPE tokenizer, random weights (generates nonsense)",
        "layers": layers, "width": width, "heads": heads, "head_dim": head_dim, "vocab": tok.get_vocab_size(),
        "seed": seed, "python": sys.version.split()[0]}, indent=2))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1000)
    a = ap.parse_args(argv)
    path = write_test_model(a.out, a.layers, a.width, a.heads, a.vocab)
    print(f"test model written: {path}")


if __name__ == "__main__":
    main()
