"""Prompts for load clients: one row per request (a conversation per row for ``multiturn``),
reproducible from a seed (pure: files are read, nothing else).

Prompts are made of common English words, about one token each for the usual
tokenizers; the engine's ``usage`` tells the real token counts of every request.

``synthetic``   independent prompts whose lengths follow normal distributions
                (vLLM's ``random`` dataset).
``sharegpt``    the first human turn of each conversation of a ShareGPT JSON file
                (vLLM's ``sharegpt``); its first answer's length in words is ``max_tokens``.
``prefix``      ``prefixes`` distinct prefixes of ``prefix_tokens``, each shared by an equal
                share of the requests, each request its own suffix of ``suffix_tokens``
                (vLLM's ``prefix_repetition``, inference-perf's ``shared_prefix``).
``multiturn``   conversations of ``turns`` user turns; the client sends each turn with the
                whole history, the engine's real answers included, ``think_time`` apart. With
                ``path``, every human turn of a ShareGPT file's conversations.
``trace``       a JSONL trace replayed at its own times (Mooncake's format, which aiperf and
                guidellm read): ``timestamp`` (ms), ``input_length``, ``output_length`` and
                optional ``hash_ids``: requests that share a hash ID share that block of
                ``block_tokens`` prompt tokens.
``prompts``     the user's own JSONL: ``{"prompt": ..., "output_tokens": N}`` or chat
                ``{"messages": [...], "output_tokens": N}``.
"""

from __future__ import annotations

import json
import math
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
KINDS = ("synthetic", "sharegpt", "prefix", "multiturn", "trace", "prompts")
FILE_KINDS = ("sharegpt", "trace", "prompts")     # need a path
MAX_FILE_BYTES = 512 << 20


@dataclass(frozen=True)
class DatasetSpec:
    kind: str = "synthetic"
    input_tokens: tuple[float, float] = (64.0, 0.0)    # mean, standard deviation (multiturn: per user turn)
    output_tokens: tuple[float, float] = (32.0, 0.0)
    seed: int = 0
    path: str | None = None                   # sharegpt, trace, prompts (multiturn: a ShareGPT file)
    prefixes: int = 1                         # prefix: distinct shared prefixes
    prefix_tokens: int = 256
    suffix_tokens: int = 32
    turns: int = 4                            # multiturn: user turns per conversation
    think_time: float = 0.0                   # multiturn: seconds between an answer and the next turn
    speedup: float = 1.0                      # trace: 2.0 sends twice as fast as recorded
    block_tokens: int = 512                   # trace: prompt tokens a hash ID stands for (Mooncake: 512)

    @property
    def conversations(self) -> bool:
        return self.kind == "multiturn"

    @property
    def timed(self) -> bool:
        """Rows carry their own send times (a trace): no rate may be given beside them."""
        return self.kind == "trace"


def _count(rng: random.Random, mean: float, stddev: float) -> int:
    return max(1, round(rng.gauss(mean, stddev) if stddev else mean))


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def build_rows(spec: DatasetSpec, count: int | None) -> list[dict]:
    """Rows for ``count`` requests (None: all a file has); the same spec gives the same rows.

    Each row is ``{row, prompt | messages, max_tokens}``; a prefix row adds ``prefix`` (its group),
    a trace row ``at`` (seconds after the trace's first request), a multiturn row is one
    conversation ``{row, conversation, turns: [{prompt, max_tokens}, ...]}``."""
    rng = random.Random(spec.seed)
    want = MAX_ROWS if count is None else min(max(count, 1), MAX_ROWS)
    if spec.kind == "synthetic":
        return [{"row": i, "prompt": _words(rng, _count(rng, *spec.input_tokens)),
                 "max_tokens": _count(rng, *spec.output_tokens)} for i in range(want)]
    if spec.kind == "sharegpt":
        convs = sharegpt_conversations(Path(spec.path))
        rng.shuffle(convs)
        return [{"row": i, "prompt": c[0][0], "max_tokens": max(1, len(c[0][1].split()))}
                for i, c in enumerate(convs[:want])]
    if spec.kind == "prefix":
        return _prefix_rows(spec, rng, want)
    if spec.kind == "multiturn":
        return _multiturn_rows(spec, rng, want)
    if spec.kind == "trace":
        return _trace_rows(spec, want)
    if spec.kind == "prompts":
        return read_prompts(Path(spec.path))[:want]
    raise RecipeError(f"dataset kind {spec.kind!r}: expected one of {', '.join(KINDS)}")


def _prefix_rows(spec: DatasetSpec, rng: random.Random, count: int) -> list[dict]:
    """As vLLM's prefix_repetition: each prefix shared by count/prefixes requests, in shuffled order."""
    prefixes = [_words(rng, spec.prefix_tokens) for _ in range(spec.prefixes)]
    groups = [i % spec.prefixes for i in range(count)]
    rng.shuffle(groups)
    return [{"row": i, "prefix": g, "prompt": prefixes[g] + " " + _words(rng, spec.suffix_tokens),
             "max_tokens": _count(rng, *spec.output_tokens)} for i, g in enumerate(groups)]


def _multiturn_rows(spec: DatasetSpec, rng: random.Random, requests: int) -> list[dict]:
    """Conversations enough for ``requests`` turns."""
    n = math.ceil(requests / spec.turns)
    if spec.path:   # every human turn of ShareGPT conversations, answers' lengths as max_tokens
        convs = sharegpt_conversations(Path(spec.path))
        rng.shuffle(convs)
        return [{"row": i, "conversation": i,
                 "turns": [{"prompt": p, "max_tokens": max(1, len(a.split()))} for p, a in c]}
                for i, c in enumerate(convs[:n])]
    return [{"row": i, "conversation": i,
             "turns": [{"prompt": _words(rng, _count(rng, *spec.input_tokens)),
                        "max_tokens": _count(rng, *spec.output_tokens)} for _ in range(spec.turns)]}
            for i in range(n)]


def _block(seed: int, hash_id: int, tokens: int) -> list[str]:
    """The words a trace's hash ID stands for: the same ID, the same block, in every request."""
    rng = random.Random(f"{seed}:{hash_id}")
    return [rng.choice(WORDS) for _ in range(tokens)]


def _trace_rows(spec: DatasetSpec, count: int) -> list[dict]:
    lines = read_trace(Path(spec.path))[:count]
    first = lines[0]["timestamp"]
    rows = []
    filler = random.Random(spec.seed)
    for i, t in enumerate(lines):
        words: list[str] = []
        for h in t.get("hash_ids") or []:
            words += _block(spec.seed, h, spec.block_tokens)
            if len(words) >= t["input_length"]:
                break
        words = words[:t["input_length"]]
        words += [filler.choice(WORDS) for _ in range(t["input_length"] - len(words))]
        rows.append({"row": i, "at": round((t["timestamp"] - first) / 1000.0, 6), "prompt": " ".join(words),
                     "max_tokens": t["output_length"]})
    return rows


def _lines(path: Path, what: str):
    """(line number, parsed object) of a JSONL file; a line that is not a JSON object is named."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RecipeError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB")
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"{path}: line {i}: not JSON ({exc.msg}); a {what} is JSON lines, one object a line") \
                from None
        if not isinstance(doc, dict):
            raise RecipeError(f"{path}: line {i}: expected a JSON object, got {type(doc).__name__}")
        yield i, doc


def _positive_int(doc: dict, key: str, where: str, minimum: int = 1) -> int:
    v = doc.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        got = "nothing" if key not in doc else repr(v)
        raise RecipeError(f"{where}: {key}: expected an integer of at least {minimum}, got {got}")
    return v


def read_trace(path: Path) -> list[dict]:
    """A Mooncake-format trace, in send order: {timestamp (ms), input_length, output_length, hash_ids?}."""
    out = []
    for i, doc in _lines(path, "trace"):
        where = f"{path}: line {i}"
        ts = doc.get("timestamp")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or ts < 0 or not math.isfinite(ts):
            raise RecipeError(f"{where}: timestamp: expected milliseconds (a number of at least 0), got "
                              + ("nothing" if "timestamp" not in doc else repr(ts)))
        rec = {"timestamp": float(ts), "input_length": _positive_int(doc, "input_length", where),
               "output_length": _positive_int(doc, "output_length", where)}
        hashes = doc.get("hash_ids")
        if hashes is not None:
            if not isinstance(hashes, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hashes):
                raise RecipeError(f"{where}: hash_ids: expected a list of integers, got {hashes!r}"[:300])
            rec["hash_ids"] = hashes
        out.append(rec)
        if len(out) >= MAX_ROWS:
            break
    if not out:
        raise RecipeError(f"{path}: an empty trace (expected JSON lines such as "
                          '{"timestamp": 0, "input_length": 512, "output_length": 32, "hash_ids": [0]})')
    out.sort(key=lambda r: r["timestamp"])
    return out


def read_prompts(path: Path) -> list[dict]:
    """The user's prompts: {"prompt": str} or {"messages": [{role, content}]}, each with an optional
    output_tokens (or max_tokens)."""
    rows = []
    for i, doc in _lines(path, "prompts file"):
        where = f"{path}: line {i}"
        row: dict = {"row": len(rows)}
        if ("prompt" in doc) == ("messages" in doc):
            raise RecipeError(f"{where}: expected one of prompt (a string) or messages (a chat), got "
                              + (", ".join(sorted(doc)) or "an empty object"))
        if "prompt" in doc:
            if not isinstance(doc["prompt"], str) or not doc["prompt"]:
                raise RecipeError(f"{where}: prompt: expected a non-empty string")
            row["prompt"] = doc["prompt"]
        else:
            msgs = doc["messages"]
            if not isinstance(msgs, list) or not msgs or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in msgs):
                raise RecipeError(f"{where}: messages: expected a list of {{role, content}} objects with strings")
            row["messages"] = msgs
        key = "output_tokens" if "output_tokens" in doc else "max_tokens" if "max_tokens" in doc else None
        if key:
            row["max_tokens"] = _positive_int(doc, key, where)
        rows.append(row)
        if len(rows) >= MAX_ROWS:
            break
    if not rows:
        raise RecipeError(f'{path}: no prompts (expected JSON lines such as {{"prompt": "...", "output_tokens": 64}})')
    return rows


def sharegpt_conversations(path: Path) -> list[list[tuple[str, str]]]:
    """Each conversation's (human turn, the answer after it) pairs, in order, cut before the first
    turn that breaks the human/answer alternation; conversations without one such pair are skipped."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecipeError(f"{path}: not a ShareGPT JSON file ({exc})") from None
    out = []
    for conv in doc if isinstance(doc, list) else []:
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list):
            continue
        pairs = []
        for human, answer in zip(turns[0::2], turns[1::2]):
            if not (isinstance(human, dict) and isinstance(answer, dict) and human.get("from") == "human"
                    and answer.get("from") in ("gpt", "chatgpt", "assistant")):
                break
            pairs.append((str(human.get("value", "")), str(answer.get("value", ""))))
        if pairs:
            out.append(pairs)
    if not out:
        raise RecipeError(f"{path}: no conversation with a human turn and an answer (ShareGPT format: "
                          '[{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}])')
    return out

