import os

from orchestrator.cluster.local import LocalTransport
from orchestrator.cluster.shell import command, path

HOSTILE = "x'; touch /tmp/pwned_by_test; echo '"


def test_hostile_argument_reaches_the_command_as_one_literal(tmp_path):
    marker = "/tmp/pwned_by_test"
    if os.path.exists(marker):
        os.unlink(marker)
    result = LocalTransport().run(command("printf", "%s\\n", HOSTILE, "$HOME", "{a,b}"), check=True)
    assert result.stdout.splitlines() == [HOSTILE, "$HOME", "{a,b}"]
    assert not os.path.exists(marker)


def test_promql_with_quotes_and_braces_survives_quoting():
    q = 'sum(rate(http_requests_total{job=~"api|web", path!="/x y"}[5m])) by (job)'
    out = LocalTransport().run(command("printf", "%s", q), check=True).stdout
    assert out == q


def test_remote_path_expands_home_but_quotes_the_rest():
    home = os.path.expanduser("~")
    out = LocalTransport().run("printf %s " + path("~/dir with space/$x"), check=True).stdout
    assert out == f"{home}/dir with space/$x"
    assert path("/abs/p q") == "'/abs/p q'"
