"""Commands run by the local agent: a warm process forks for each one, so a command pays neither
Python's imports nor an SSH handshake (Mercurial's chg and Emacs' emacsclient work this way).

When an agent runs for the command's config file, the entry point (cli/entry.py) imports nothing
of the CLI: it sends its argv, environment, working directory and umask, with its stdin, stdout
and stderr as file descriptors (SCM_RIGHTS), to the agent's command socket, found from the config
file's path alone (no YAML read here). There a *zygote*, forked from the agent before it opened
any thread or connection and holding the CLI's modules imported, checks that the config (read
again, under the command's environment) asks for the agent (``ssh.agent: true`` or ORCH_AGENT=1),
then forks a child that takes those descriptors, that environment and that directory and runs
the command exactly as this process would have; its output goes straight to this terminal or
pipe. This process forwards SIGINT, SIGTERM and SIGHUP to the child
and exits with the child's exit code; if this process is killed, the child gets SIGHUP, as from a
closed terminal, so every job it started is cancelled as usual.

Anything unexpected (no agent, another Python or checkout, code changed since the agent started,
a socket not ours) and the command runs here, in-process, as without the agent.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import zlib

from orchestrator.cluster.frames import frame, peer_uid, recv_frame

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCLUDED = {"connect", "sandbox"}  # they manage the agent or the machine: always in-process


def config_argument(argv: list[str]) -> str | None:
    """The value of the last ``--config`` in argv (a subcommand's wins over the group's, as in click)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--config="):
            found = arg[len("--config="):]
    return found


def config_path(argv: list[str], env) -> str:
    """The config file a command reads, as config.resolve_config_path finds it, resolved."""
    return os.path.realpath(os.path.expanduser(config_argument(argv) or env.get("ORCH_CONFIG") or "config.yaml"))


def command_socket(config_file: str, env) -> str:
    """Where the agent of a config file takes commands: found from the file's path alone, so that
    handing a command over costs no YAML. A private per-user directory: $XDG_RUNTIME_DIR/orch,
    else /tmp/orch-UID (used only if it is ours and closed to others)."""
    base = env.get("XDG_RUNTIME_DIR")
    directory = os.path.join(base, "orch") if base else f"/tmp/orch-{os.getuid()}"
    return os.path.join(directory, f"{zlib.crc32(config_file.encode()):08x}.sock")


def _private_dir(path: str) -> bool:
    """The socket's directory is ours and closed to everyone else: our environment goes there."""
    try:
        st = os.lstat(os.path.dirname(path))
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o077 and os.path.isdir(os.path.dirname(path))


# -- the client (this process) --------------------------------------------------------
def run_in_agent(argv: list[str], env=None) -> int | None:
    """The command's exit code when the agent ran it; None to run it in this process."""
    env = os.environ if env is None else env
    if env.get("ORCH_AGENT") == "0" or EXCLUDED.intersection(argv):
        return None
    config = config_path(argv, env)
    path = command_socket(config, env)
    if not _private_dir(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
        sock.connect(path)
    except OSError:  # no agent for this config, or a closed descriptor: in-process
        sock.close()
        return None
    with sock:
        return _hand_over(sock, argv, env, config)


def _hand_over(sock: socket.socket, argv: list[str], env, config: str) -> int | None:
    umask = os.umask(0)
    os.umask(umask)
    # Until the child's pid is here, signals act as they would on any command: Ctrl-C interrupts,
    # SIGTERM ends this process; either closes the socket, which hangs up a child that did start.
    try:
        request = {"config": config, "argv0": sys.argv[0], "argv": argv, "env": dict(env), "cwd": os.getcwd(),
                   "umask": umask, "python": sys.executable, "package": PACKAGE,
                   "stdio": [_stdio_spec(s) for s in (sys.stdin, sys.stdout, sys.stderr)]}
        socket.send_fds(sock, [frame(request)], [0, 1, 2])
        started = recv_frame(sock)
    except OSError:
        return None
    if not started or "pid" not in started:
        return None  # declined (the agent is not wanted, stale code, another Python): run here
    pid = started["pid"]

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        ended = recv_frame(sock)
    except OSError:
        ended = None
    if ended is None:
        sys.stderr.write(f"error: the agent's process running this command (pid {pid}) ended without an exit "
                         f"status (killed?)\n")
        return 1
    return ended["exit"]


def _stdio_spec(stream) -> list:
    """How this process's stream encodes and buffers, for the child's to do the same."""
    return [getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or "strict",
            bool(getattr(stream, "line_buffering", False)), bool(getattr(stream, "write_through", False))]


# -- the zygote (in the agent) -------------------------------------------------------
PRELOAD = ("orchestrator.cli.main", "orchestrator.cli.services", "orchestrator.cli.monitor", "orchestrator.cli.watch",
           "orchestrator.cli.bench", "orchestrator.services.servers", "orchestrator.services.recipes",
           "orchestrator.services.probe", "orchestrator.monitoring.monitors", "orchestrator.monitoring.promql",
           "orchestrator.watch.attribution", "orchestrator.watch.watcher", "orchestrator.cluster.agent",
           "orchestrator.logs", "orchestrator.terminal", "orchestrator.templating", "jinja2", "rich.console")


def code_fingerprint(root: str = PACKAGE) -> list:
    """What the agent's imported code was read from: a command is refused once any of it changed."""
    out = []
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(base, name))
                out.append([os.path.relpath(os.path.join(base, name), root), st.st_mtime_ns, st.st_size])
    return out


def start_zygote(config_file: str, agent_socket: str):
    """Fork the zygote of a config file's agent; call before the agent starts any thread or
    connection, so that forking it (and, in it, each command) copies a process holding no lock.
    Returns the function that stops it (its end of a pipe from the agent reads EOF), or None."""
    config_file = os.path.realpath(config_file)
    path = command_socket(config_file, os.environ)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    except OSError:
        pass
    if not _private_dir(path):
        print(f"{os.path.dirname(path)} is not a directory of ours closed to others: commands run in-process",
              file=sys.stderr, flush=True)
        return None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        code = 0
        try:
            _zygote(config_file, path, r, agent_socket)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(r)

    def stop() -> None:
        os.close(w)
        for _ in range(100):  # it exits within a select() round; reaped here, not left a zombie
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.05)
    return stop


def _zygote(config_file: str, path: str, parent_alive: int, agent_socket: str) -> None:
    import importlib
    import select

    from orchestrator.fileio import unlink_if_same
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an optional one missing: the child imports what it needs itself
            pass
    fingerprint = code_fingerprint()
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # 0600
    try:
        srv.bind(path)
    finally:
        os.umask(old)
    mine = os.stat(path).st_ino
    srv.listen(16)
    try:
        while True:
            ready, _, _ = select.select([srv, parent_alive], [], [], 5.0)
            _reap()
            if parent_alive in ready:
                return  # the agent exited
            if srv in ready:
                conn, _ = srv.accept()
                with conn:
                    if not _serve_one(conn, srv, parent_alive, config_file, fingerprint, agent_socket):
                        return  # the code changed: the agent is stopped, a new one runs the new code
    finally:
        srv.close()
        unlink_if_same(path, mine)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve_one(conn: socket.socket, srv: socket.socket, parent_alive: int, config_file: str,
               fingerprint: list, agent_socket: str) -> bool:
    conn.settimeout(5.0)  # a client that stalls cannot hold the zygote
    if peer_uid(conn) != os.getuid():
        return True
    fds: list[int] = []
    try:
        data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
        req = recv_frame(conn, data)
        if req is None or len(fds) != 3:
            return True
        why = _declined(req, config_file)
        if why:
            conn.sendall(frame({"declined": why}))
            return True
        if code_fingerprint() != fingerprint:
            from orchestrator.cluster.agent import stop_agent_at
            try:  # first: the refused command, run in-process, then starts a new agent
                stop_agent_at(agent_socket, timeout=5.0)
            except OSError:
                pass
            conn.sendall(frame({"declined": "the tool's code changed since the agent started"}))
            return False
        pid = os.fork()
        if pid == 0:
            srv.close()
            os.close(parent_alive)
            _child(conn, req, fds)  # never returns
        return True
    except (OSError, ValueError, KeyError):
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _declined(req: dict, config_file: str) -> str | None:
    """Why this agent does not run the command (it then runs in-process), or None."""
    if req["python"] != sys.executable or req["package"] != PACKAGE:
        return "another Python or checkout"
    if req["config"] != config_file:
        return "another config file"
    from orchestrator.cluster.connect import agent_wanted
    from orchestrator.config import load_config
    try:  # read again: the file may have changed, and the command's environment layers over it
        wanted = agent_wanted(load_config(config_file, req["env"]), req["env"])
    except Exception:
        return "the config does not load (the command says why)"
    return None if wanted else "the config does not ask for the agent"


def _child(conn: socket.socket, req: dict, fds: list[int]) -> None:
    code = 1
    done = False
    try:
        from orchestrator.cli import common
        common.RAN_IN = "agent"
        conn.settimeout(None)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(req["cwd"])
        os.umask(req["umask"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = [req["argv0"], *req["argv"]]
        _stdio(req["stdio"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        conn.sendall(frame({"pid": os.getpid()}))
        _watch_client(conn, lambda: done)
        from orchestrator.cli.main import main
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
    except BaseException as exc:  # before the command could start (its working directory is gone, ...)
        code = 1
        try:
            os.write(2, f"error: the agent could not run this command: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        done = True
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            conn.sendall(frame({"exit": code}))
        except OSError:
            pass
        os._exit(code)


def _exit_code(code) -> int:
    """sys.exit's argument as the exit status the interpreter would give it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def _stdio(specs: list) -> None:
    """New sys.stdin/stdout/stderr on descriptors 0-2, set up as the client's own were."""
    import io
    streams = []
    for fd, (encoding, errors, line_buffering, write_through) in enumerate(specs):
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        buffered = io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        streams.append(io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=line_buffering,
                                        write_through=write_through))
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def _watch_client(conn: socket.socket, finished) -> None:
    """The client gone (killed, its terminal closed) before the command ended: SIGHUP, as a terminal
    would send, so the command unwinds and cancels what it started."""
    import threading

    def watch():
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        if not finished():
            os.kill(os.getpid(), signal.SIGHUP)

    threading.Thread(target=watch, name="client-watch", daemon=True).start()
