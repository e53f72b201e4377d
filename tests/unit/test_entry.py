"""The entry point's reading of argv before click: which commands surely talk to the cluster (their
connection starts opening while the CLI imports) and the root options that take values."""

import click
import pytest

from orchestrator.cli import entry
from orchestrator.cli.main import cli


def test_the_value_options_the_entry_skips_are_the_root_groups_own():
    taking = {opt: p.nargs for p in cli.params if isinstance(p, click.Option) and not p.is_flag
              for opt in p.opts if opt.startswith("--")}
    assert taking == entry.GROUP_VALUES
    flags = {opt for p in cli.params if isinstance(p, click.Option) and p.is_flag for opt in p.opts}
    assert entry.REMOTE_FLAGS - set(taking) <= flags  # --status is a flag; the others take an ID


def test_remote_subcommands_exist():
    assert entry.REMOTE_COMMANDS <= set(cli.list_commands(None))


@pytest.mark.parametrize("argv, remote", [
    (["--status"], True),
    (["--json", "--status"], True),
    (["--config", "c.yaml", "--service-endpoint", "svc_0123abcd"], True),
    (["--service-endpoint=svc_0123abcd"], True),
    (["--query-service-metrics", "mid", 'up{job="x"}'], True),
    (["--config", "logs", "--status"], True),            # "logs" is --config's value here
    (["--config", "c.yaml", "logs", "svc_0123abcd"], True),
    (["monitor", "list"], True),
    (["monitor", "list", "--available"], False),          # recipes on this machine
    (["--recipe", "python-http", "--dry-run"], False),
    (["--recipe", "logs"], False),                        # a recipe named like a command
    (["bench", "report", "dir"], False),                  # offline
    (["report", "compare", "a", "b"], False),
    (["sandbox", "status"], False),
    (["--status", "--help"], False),
    (["--version"], False),
    ([], False),
])
def test_which_commands_talk_to_the_cluster(argv, remote):
    assert entry.talks_to_cluster(argv) is remote


def _closed_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connecting is refused at once
    return port


def test_the_early_connection_goes_to_the_transport_with_the_same_settings_and_its_error_with_it(tmp_path):
    from orchestrator.cluster import early
    from orchestrator.config import SSHConfig
    from orchestrator.errors import TransportError
    cfg = SSHConfig(host="127.0.0.1", port=_closed_port(), user="u", key_file=str(tmp_path / "key"),
                    known_hosts=str(tmp_path / "kh"), ssh_config=str(tmp_path / "none"))
    early.start(cfg)
    try:
        assert early.take(SSHConfig(host="elsewhere")) is None  # another target: not this connection
        transport = early.take(cfg)
        assert early.take(cfg) is None  # taken once
        with pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{cfg.port}"):
            transport.run("true")  # raised where the command first needs the connection
        transport.close()
    finally:
        early._early = None
