"""The bottleneck verdict: which limit the window's numbers show, and the numbers behind it."""

from orchestrator.analysis.bottleneck import Load, verdict

CLOSED = Load(jobs=1, concurrency=8)


def test_errors_come_first():
    v = verdict({"error_rate": 0.2, "cpu_utilisation": 99.0, "throughput": 10.0}, CLOSED)
    assert v.kind == "errors" and "20.0%" in v.text and v.evidence["error_rate"] == 0.2


def test_a_client_using_a_whole_core_is_the_limit():
    v = verdict({"error_rate": 0.0, "throughput": 2000.0, "client_overhead_cpu_per_request": 0.0005,
                 "cpu_utilisation": 60.0}, Load(jobs=1, concurrency=64))
    assert v.kind == "client" and "1.00 cores" in v.text and v.evidence["client_cores_per_job"] == 1.0
    assert "more client jobs" in v.next


def test_a_closed_loop_with_an_idle_service_is_too_little_concurrency():
    v = verdict({"error_rate": 0.0, "throughput": 50.0, "client_overhead_cpu_per_request": 0.0002,
                 "cpu_utilisation": 12.0, "service_requests_waiting_max": 0.0}, Load(jobs=2, concurrency=1))
    assert v.kind == "client" and "all 2 requests in flight" in v.text and "Raise the clients' concurrency" in v.next
    # the same numbers at an open-loop rate: the service kept up, nothing limited it
    assert verdict({"error_rate": 0.0, "throughput": 50.0, "cpu_utilisation": 12.0,
                    "service_requests_waiting_max": 0.0}, Load(jobs=2, concurrency=1, rate=50.0)).kind == "none"


def test_compute_at_ninety_percent_or_more():
    v = verdict({"error_rate": 0.0, "throughput": 20.0, "cpu_utilisation": 97.0, "gpu_utilisation": None,
                 "service_requests_waiting_max": 6.0}, CLOSED)
    assert v.kind == "compute" and "CPU at 97%" in v.text
    assert verdict({"gpu_utilisation": 95.0, "cpu_utilisation": 30.0}, None).text.startswith("Compute-bound: GPU")


def test_waiting_requests_with_compute_to_spare_are_the_engines_slots():
    v = verdict({"error_rate": 0.0, "throughput": 40.0, "cpu_utilisation": 35.0, "service_requests_waiting_max": 4.0,
                 "service_requests_running_max": 4.0}, Load(jobs=1, concurrency=8))
    assert v.kind == "slots" and "up to 4 requests waited while 4 ran" in v.text and "more slots" in v.next


def test_memory_near_full():
    v = verdict({"cpu_utilisation": 70.0, "memory_used_max": 15.0 * 2**30}, None, memory_total=16.0 * 2**30)
    assert v.kind == "memory" and "15.0 of 16.0 GiB" in v.text


def test_without_utilisation_or_queue_there_is_no_verdict():
    assert verdict({"error_rate": 0.0, "throughput": 5.0}, CLOSED).kind == "unknown"
