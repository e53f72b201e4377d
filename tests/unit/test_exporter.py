import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator.oncluster.nvidia_smi_exporter import (
    parse_nvidia_smi,
    render_metrics,
)

DATA = Path(__file__).resolve().parents[1] / "data"
EXPORTER = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster" / "nvidia_smi_exporter.py"


def test_csv_rows_become_dcgm_metrics_and_na_fields_are_absent_not_zero():
    gpus = parse_nvidia_smi((DATA / "nvidia_smi_query.csv").read_text())
    text = render_metrics(gpus, "n1")
    assert 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-5d1c8f3a-1f4e-7b2a-9c0d-6e5f4a3b2c1d",modelName="NVIDIA H100 80GB HBM3",Hostname="n1"} 37' in text
    assert 'DCGM_FI_DEV_FB_FREE{gpu="0"' in text and "} 80356" in text  # total - used
    power = [l for l in text.splitlines() if l.startswith("DCGM_FI_DEV_POWER_USAGE{")]
    assert len(power) == 1 and 'gpu="0"' in power[0]  # GPU 1 reports [N/A]
    assert "orch_nvidia_smi_up 1" in text


def test_wrong_field_count_is_an_error():
    with pytest.raises(ValueError, match="expected 8 fields"):
        parse_nvidia_smi("0, GPU-x, name, 5\n")


def test_exporter_serves_the_recorded_output_over_http(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(EXPORTER), "--address", "127.0.0.1", "--port", str(port),
                             "--command", f"cat {DATA / 'nvidia_smi_query.csv'}"])
    try:
        for _ in range(50):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "DCGM_FI_DEV_GPU_TEMP{" in body and "orch_nvidia_smi_up 1" in body
    finally:
        proc.terminate()
        proc.wait(5)
