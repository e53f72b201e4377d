"""Every `orch` command the README shows (its code blocks, and the synopses of its tables and prose)
names commands and options the CLI has: each is parsed by the real CLI, without running it. A
renamed option, or a command the README still shows after it went, turns this red. (The quick
start runs for real against the sandbox: tests/e2e/test_quickstart_e2e.py.)"""

import re
import shlex
from pathlib import Path

import click
import pytest

from orchestrator.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"
PLACEHOLDER_VALUES = {"S": "5", "N": "5", "--port": None}


def readme_commands(text: str) -> list[str]:
    """Command lines in ```bash blocks, and `orch ...` spans elsewhere (synopses: [optional] parts taken,
    the first of a|b alternatives, ID... as ID)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        found += [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("orch ")]
    found += re.findall(r"`(orch [^`]+)`", text)
    return list(dict.fromkeys(found))


def synopsis_argv(line: str) -> list[str]:
    t = line.replace("\\|", "|")
    while "[" in t:
        t = re.sub(r"\[([^\[\]]*)\]", r" \1 ", t)
    argv = []
    for tok in shlex.split(t)[1:]:
        tok = tok.split("|")[0] if "|" in tok else tok
        tok = tok.removesuffix("...")
        argv.append(PLACEHOLDER_VALUES.get(tok) or tok)
    return argv


def parse(argv: list[str]) -> None:
    """Parse as click would before running: the root's options, then each subcommand's."""
    group, ctx = cli, cli.make_context("orch", list(argv))
    rest = [*ctx._protected_args, *ctx.args]
    while rest:
        name, cmd, rest = group.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)
        if not isinstance(cmd, click.Group):
            return
        group, rest = cmd, [*ctx._protected_args, *ctx.args]


COMMANDS = readme_commands(README.read_text())


def test_the_readme_shows_commands_to_check():
    assert len(COMMANDS) >= 30 and "orch init" in " ".join(COMMANDS)


@pytest.mark.parametrize("line", COMMANDS)
def test_a_readme_command_parses(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = synopsis_argv(line)
    for word in argv:   # placeholders that name a folder the command checks exists (DIR, A, SESSION_DIR)
        if re.fullmatch(r"[A-Z][A-Z_]*", word):
            (tmp_path / word).mkdir(exist_ok=True)
    try:
        parse(argv)
    except click.MissingParameter:
        assert len(argv) <= 3, line   # prose names a command without its argument ("`orch validate` checks ...")


def test_the_check_fails_on_an_option_or_a_command_that_does_not_exist():
    with pytest.raises(click.NoSuchOption):
        parse(synopsis_argv("orch bench run --dry-runn vllm-chat"))
    with pytest.raises(click.UsageError, match="No such command"):
        parse(synopsis_argv("orch recipes show vllm"))


def _commands(cmd=cli, path=("orch",)):
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(None):
            yield from _commands(cmd.get_command(None, name), (*path, name))
    yield " ".join(path), cmd


def test_every_option_of_every_command_says_what_it_does():
    missing = [f"{path} {p.opts[0]}" for path, cmd in _commands() for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert missing == []


def test_every_command_that_prints_a_result_has_a_json_form():
    # `sandbox down` prints progress only; a group prints its help
    lacking = [path for path, cmd in _commands() if not isinstance(cmd, click.Group)
               and path != "orch sandbox down" and not any(p.name == "as_json" for p in cmd.params)]
    assert lacking == []
