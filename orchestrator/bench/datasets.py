"""Prompts for load clients: one row per request, reproducible from a seed (pure).

``synthetic``: prompts of common English words (about one token each for the
usual tokenizers) whose counts follow normal distributions of input and output
tokens; the output count becomes ``max_tokens``. ``sharegpt``: the first human
turn of each conversation of a ShareGPT-format JSON file (the format vLLM's
benchmark reads); its first answer's length in words becomes ``max_tokens``.
The engine's ``usage`` tells the real token counts of every request.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import RecipeError

WORDS = ("the of and to in is that it for was on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do "
         "their time if will way about many then them write would like so these her long make thing see him "
         "two has look more day could go come did number sound no most people my over know water than call "
         "first who may down side been now find any new work part take get place made live where after back").split()
MAX_ROWS = 100_000


@dataclass(frozen=True)
class DatasetSpec:
    kind: str = "synthetic"                   # synthetic | sharegpt
    input_tokens: tuple[float, float] = (64.0, 0.0)    # mean, standard deviation
    output_tokens: tuple[float, float] = (32.0, 0.0)
    seed: int = 0
    path: str | None = None                   # sharegpt: the JSON file


def _count(rng: random.Random, mean: float, stddev: float) -> int:
    return max(1, round(rng.gauss(mean, stddev) if stddev else mean))


def build_rows(spec: DatasetSpec, count: int) -> list[dict]:
    """``count`` rows ``{row, prompt, max_tokens}``; the same spec gives the same rows."""
    rng = random.Random(spec.seed)
    count = min(max(count, 1), MAX_ROWS)
    if spec.kind == "synthetic":
        rows = []
        for i in range(count):
            n_in = _count(rng, *spec.input_tokens)
            rows.append({"row": i, "prompt": " ".join(rng.choice(WORDS) for _ in range(n_in)),
                         "max_tokens": _count(rng, *spec.output_tokens)})
        return rows
    pairs = sharegpt_pairs(Path(spec.path))
    rng.shuffle(pairs)
    return [{"row": i, "prompt": p, "max_tokens": max(1, len(a.split()))}
            for i, (p, a) in enumerate(pairs[:count])]


def sharegpt_pairs(path: Path) -> list[tuple[str, str]]:
    """(first human turn, first answer) of each conversation that has both."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{path}: not a ShareGPT JSON file ({exc})") from None
    pairs = []
    for conv in doc if isinstance(doc, list) else []:
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if isinstance(turns, list) and len(turns) >= 2 and all(isinstance(t, dict) for t in turns[:2]):
            if turns[0].get("from") == "human" and turns[1].get("from") in ("gpt", "chatgpt", "assistant"):
                pairs.append((str(turns[0].get("value", "")), str(turns[1].get("value", ""))))
    if not pairs:
        raise RecipeError(f"{path}: no conversation with a human turn and an answer (ShareGPT format: "
                          '[{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}])')
    return pairs
