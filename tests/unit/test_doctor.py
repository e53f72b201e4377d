from orchestrator.cluster.doctor import parse_report
from orchestrator.cluster.remote import Marker

MARK = Marker("f00d")

REPORT_OK = """@@f00d slurm
sbatch ok
squeue ok
sinfo ok
scontrol ok
scancel ok
@@f00d sinfo
n1|cpu*|idle|4|3000
n2|cpu*|idle|4|3000
rc=0
@@f00d workdir
writable
"$HOME"/.orchestrator
@@f00d tools
curl /usr/bin/curl
apptainer -
prometheus /usr/bin/prometheus
python3 /usr/bin/python3
singularity /opt/bin/singularity
@@f00d binaries
llama-server -
pgbench /usr/bin/pgbench
postgres /usr/lib/postgresql/15/bin/postgres
postgres_exporter -
prometheus-postgres-exporter /usr/bin/prometheus-postgres-exporter
prometheus-redis-exporter /usr/bin/prometheus-redis-exporter
redis-server /usr/bin/redis-server
redis_exporter -
venv:chroma /home/u/.orchestrator/venv/bin/chroma
@@f00d ended
300 sec
sacct-none
@@f00d venv
/home/u/.orchestrator/venv
numpy 2.4.6
chromadb 1.5.9
"""


def by_name(checks):
    return {c.name: c for c in checks}


def test_healthy_report_counts_idle_nodes_and_accepts_singularity():
    checks = by_name(parse_report(REPORT_OK, "~/.orchestrator", MARK))
    assert checks["partitions/nodes"].ok and checks["partitions/nodes"].detail.startswith("2 idle node(s)")
    assert checks["apptainer"].ok and "singularity" in checks["apptainer"].detail
    assert all(c.ok for c in checks.values())


def test_missing_slurm_and_unwritable_dir_fail_with_a_fix():
    text = (REPORT_OK.replace("sbatch ok", "sbatch missing")
            .replace("writable\n", "mkdir: cannot create directory: Permission denied\n")
            .replace("curl /usr/bin/curl", "curl -"))
    checks = by_name(parse_report(text, "/scratch/x", MARK))
    assert not checks["slurm commands"].ok and "sbatch" in checks["slurm commands"].detail
    assert not checks["remote work dir"].ok and "Permission denied" in checks["remote work dir"].detail
    assert checks["curl"].status == "FAIL" and checks["curl"].fix


def test_sinfo_failure_is_reported_not_counted_as_nodes():
    text = REPORT_OK.replace("n1|cpu*|idle|4|3000\nn2|cpu*|idle|4|3000\nrc=0",
                             "sinfo: error: Unable to contact slurm controller\nrc=1")
    check = by_name(parse_report(text, "~", MARK))["partitions/nodes"]
    assert not check.ok and "Unable to contact" in check.detail


def test_services_say_what_runs_natively_and_what_needs_a_container():
    checks = by_name(parse_report(REPORT_OK, "~/.orchestrator", MARK))
    assert checks["services"].detail == ("native: redis, postgres, chroma; not here: llamacpp (no llama-server); "
                                         "llamacpp-rpc (no llama-server, ggml-rpc-server); vllm (no vllm); "
                                         "vllm-multinode (no vllm); containers only: ollama, qdrant, minio")
    assert "GGML_RPC=ON" in checks["services"].fix
    # each missing engine says how to install it
    assert "pip install vllm" in checks["services"].fix and "launch: container" in checks["services"].fix
    assert "llama-server" in checks["services"].fix
    assert checks["client venv"].detail == "/home/u/.orchestrator/venv: numpy 2.4.6, chromadb 1.5.9"


def test_a_missing_venv_is_a_warning_with_the_commands_that_build_it():
    text = REPORT_OK.replace("numpy 2.4.6\nchromadb 1.5.9\n", "missing\n")
    check = by_name(parse_report(text, "~/.orchestrator", MARK))["client venv"]
    assert check.status == "warn" and "none; the vector client (numpy) and Chroma need it" in check.detail
    assert "python3 -m venv /home/u/.orchestrator/venv && /home/u/.orchestrator/venv/bin/pip install numpy chromadb" \
        in check.fix
    text = REPORT_OK.replace("chromadb 1.5.9", "chromadb -")
    check = by_name(parse_report(text, "~/.orchestrator", MARK))["client venv"]
    assert check.status == "warn" and check.detail.endswith("missing chromadb")


def test_ended_jobs_say_how_long_squeue_lists_them_and_whether_sacct_answers():
    def ended(lines):
        text = REPORT_OK.replace("@@f00d ended\n300 sec\nsacct-none\n", "@@f00d ended\n" + lines)
        return by_name(parse_report(text, "~/.orchestrator", MARK))["ended jobs"]
    assert ended("300 sec\nsacct-none\n").ok and "MinJobAge=300 sec" in ended("300 sec\nsacct-none\n").detail
    short = ended("10 sec\nsacct-none\n")
    assert not short.ok and short.status == "warn" and "MinJobAge" in short.fix
    assert ended("10 sec\nsacct-ok\n").ok and "sacct answers" in ended("10 sec\nsacct-ok\n").detail
