import io
import json
import threading

from orchestrator.logs import configure, log, log_context


def lines(buf):
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_carry_the_context_and_the_callers_fields_not_ids_parsed_from_text():
    buf = io.StringIO()
    configure("json", stream=buf)
    try:
        with log_context(session="s-20261125T190624Z-f801"):
            with log_context(service_id="standin-llm_45755b15", job_id="39"):
                log("submitted standin-llm_45755b15 as job 39")
            log("between")
        log("plain", level="error", job_id="7")
        log("mentions job 12 and svc_0123abcd but carries no IDs")
        first, between, second, third = lines(buf)
        assert (first["service_id"], first["job_id"], first["session"]) == ("standin-llm_45755b15", "39",
                                                                           "s-20261125T190624Z-f801")
        assert between["session"] == "s-20261125T190624Z-f801" and "service_id" not in between
        assert second == {**second, "level": "error", "msg": "plain", "job_id": "7"} and "session" not in second
        assert "job_id" not in third and "service_id" not in third
    finally:
        configure("text")


def test_context_does_not_leak_between_threads():
    buf = io.StringIO()
    configure("json", stream=buf)
    try:
        def other():
            log("from another thread")
        with log_context(session="mine"):
            t = threading.Thread(target=other)
            t.start()
            t.join()
            log("from this thread")
        by_msg = {d["msg"]: d for d in lines(buf)}
        assert "session" not in by_msg["from another thread"]
        assert by_msg["from this thread"]["session"] == "mine"
    finally:
        configure("text")


def test_text_lines_show_level_only_when_not_info():
    buf = io.StringIO()
    configure("text", stream=buf)
    log("fine")
    log("bad", level="warning")
    first, second = buf.getvalue().splitlines()
    assert first.endswith("] fine") and second.endswith("] warning: bad")
