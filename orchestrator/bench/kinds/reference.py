"""What the reference clients (``vllm bench serve``, aiperf) share: their options and checks (pure).

Both generate their own prompts of fixed lengths with the tokenizer they are
given (a directory the cluster can read), stream chat or completions, and are
bounded by a request count. Their own flags may be added with ``args``; the
flags this tool sets itself are refused there, so a result never says one
thing while the tool did another.
"""

from __future__ import annotations

import re
import shlex

from orchestrator.bench.kinds import ClientKind, Preflight
from orchestrator.schema import SchemaViolation, expect_list, expect_str

KEYS = ("payload", "dataset", "arrival", "burstiness", "tokenizer", "args", "program", "endpoint")
PAYLOAD_KEYS = ("model", "ignore_eos", "stream")
ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
# a path or a hub name: no quotes, spaces or shell syntax (it goes into the job's argv)
_WORD = re.compile(r"^[A-Za-z0-9_./~@:+=,-]+$")


def parse_common(raw, path: str, program: str, reserved: tuple[str, ...]) -> dict:
    payload = raw.get("payload") or {}
    if not isinstance(payload, dict):
        raise SchemaViolation(f"{path}.payload", "expected a mapping")
    for key in payload:
        if key not in PAYLOAD_KEYS:
            raise SchemaViolation(f"{path}.payload.{key}", f"the tool builds its own requests: only "
                                  f"{', '.join(PAYLOAD_KEYS)} apply (its own flags go in args)")
    if payload.get("stream", True) is not True:
        raise SchemaViolation(f"{path}.payload.stream", "the reference clients measure streamed responses (TTFT, "
                              "ITL): stream must be true")
    tokenizer = raw.get("tokenizer")
    if tokenizer is None:
        raise SchemaViolation(f"{path}.tokenizer", "required: the tokenizer directory (on the cluster) or hub name "
                              "the tool builds its prompts with, e.g. the served model's directory")
    tokenizer = expect_str(tokenizer, f"{path}.tokenizer")
    if not _WORD.match(tokenizer):
        raise SchemaViolation(f"{path}.tokenizer", "expected a path or hub name (letters, digits, ./~@:+=,-)")
    endpoint = raw.get("endpoint", "chat")
    if endpoint not in ENDPOINTS:
        raise SchemaViolation(f"{path}.endpoint", f"expected chat or completions, got {endpoint!r}")
    args = [expect_str(a, f"{path}.args[{i}]") for i, a in enumerate(expect_list(raw.get("args") or [], f"{path}.args"))]
    for i, a in enumerate(args):
        if any(c in a for c in "\n\r\0"):
            raise SchemaViolation(f"{path}.args[{i}]", "expected one argument without line breaks")
        flag = a.split("=", 1)[0]
        if flag in reserved:
            raise SchemaViolation(f"{path}.args[{i}]", f"{flag} is set by this tool from the recipe's fields "
                                  "(model, tokenizer, dataset, requests, concurrency, rate)")
    prog = expect_str(raw.get("program", program), f"{path}.program")
    if not _WORD.match(prog):
        raise SchemaViolation(f"{path}.program", "expected a command name or path")
    model = payload.get("model")
    if model is not None and not (isinstance(model, str) and _WORD.match(model)):
        raise SchemaViolation(f"{path}.payload.model", "expected a model name (letters, digits, ./@:+=,-)")
    ignore = payload.get("ignore_eos", True)
    if not isinstance(ignore, bool):
        raise SchemaViolation(f"{path}.payload.ignore_eos", f"expected true or false, got {ignore!r}")
    return {"tokenizer": tokenizer, "args": args, "program": prog, "model": model or "standin",
            "ignore_eos": ignore, "endpoint": endpoint}


def fixed_lengths(spec, path: str, stddev_ok: bool, datasets: tuple[str, ...] = ("synthetic",)
                  ) -> tuple[tuple[float, float], tuple[float, float], int]:
    """The lengths of the prompts the tool generates itself; ``datasets``: the kinds it can generate."""
    ds = spec.dataset
    if ds is None or ds.kind not in datasets:
        also = "; or {kind: prefix, prefixes, prefix_tokens, suffix_tokens, output_tokens}" if "prefix" in datasets else ""
        raise SchemaViolation(f"{path}.dataset", "expected {kind: synthetic, input_tokens: N, output_tokens: M}"
                              f"{also}: the tool generates prompts of those lengths with its tokenizer")
    if ds.kind == "prefix":
        return (float(ds.prefix_tokens + ds.suffix_tokens), 0.0), ds.output_tokens, ds.seed
    if not stddev_ok and (ds.input_tokens[1] or ds.output_tokens[1]):
        raise SchemaViolation(f"{path}.dataset", "this tool's random prompts have fixed lengths: stddev must be 0")
    return ds.input_tokens, ds.output_tokens, ds.seed


def preflight(spec, subcommand: list[str], probe_argv: list[str]) -> list[Preflight]:
    """The tool exists on the login node (the nodes share its software); with extra ``args``, the tool's own
    argument parser reads them against a closed port, so a flag it rejects stops the session with its
    own message before any job is submitted."""
    prog = spec.options["program"]
    missing = (f"{prog}: command not found on the login node: install it (scripts/build-vllm.sh on the sandbox; "
               "README, Reference clients) or set the client's program: to its path")
    checks = [Preflight(f"{prog} (the {spec.kind} client's program)",
                        f"command -v {shlex.quote(prog)} >/dev/null || {{ echo {shlex.quote(missing)} >&2; exit 127; }}")]
    if spec.options["args"]:
        # exit 2 is argparse's (and cyclopts') usage error; anything else means the flags were taken
        checks.append(Preflight(f"{prog} {' '.join(subcommand)} flags",
                                f"out=$(cd \"$(mktemp -d)\" && timeout 120 {shlex.join(probe_argv)} 2>&1); rc=$?; "
                                "if [ $rc -eq 2 ] || echo \"$out\" | grep -qiE 'unrecognized arguments|unknown option|"
                                "no such option|invalid choice'; then echo \"$out\" | tail -n 8 >&2; exit 2; fi; exit 0"))
    return checks


def reference_kind(name: str, tool_argv, options, *, subcommand: list[str], count_flag: str, stddev_ok: bool,
                   mem: str, needs_requests: bool = False, datasets: tuple[str, ...] = ("synthetic",)) -> ClientKind:
    """A kind that runs a reference tool through ``oncluster/refclient.py``: the tool's argv (``tool_argv(spec,
    url, node_index)``) goes after refclient's own options; its lengths are checked when the recipe is read;
    before any job, the tool is looked for and any extra ``args`` are read by its parser (``count_flag``
    set to 1 request, against a closed port)."""
    def argv(spec, url: str, node_index: int, context: dict) -> list[str]:
        return ["--tool", name, "--", *tool_argv(spec, url, node_index)]

    def check(spec, path: str) -> None:
        fixed_lengths(spec, path, stddev_ok=stddev_ok, datasets=datasets)

    def probe(spec) -> list[Preflight]:
        probe_argv = tool_argv(spec, "http://127.0.0.1:9", 0)
        if count_flag in probe_argv:
            probe_argv[probe_argv.index(count_flag) + 1] = "1"
        return preflight(spec, subcommand, probe_argv)

    return ClientKind(name, "refclient.py", KEYS, options, argv, tokens=True, needs_requests=needs_requests,
                      preflight=probe, check=check, mem=mem, files=("formats.py",))
