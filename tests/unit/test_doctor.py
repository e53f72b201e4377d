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
