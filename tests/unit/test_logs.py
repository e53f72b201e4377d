import io
import json

from orchestrator.logs import fields_from, log, log_context, set_format


def test_json_lines_carry_ids_from_the_message_and_the_context():
    set_format("json")
    try:
        buf = io.StringIO()
        with log_context(session="s-20261125T190624Z-f801"):
            log("submitted standin-llm_45755b15 as job 39", stream=buf)
        log("plain", level="error", stream=buf, job_id="7")
        first, second = [json.loads(l) for l in buf.getvalue().splitlines()]
        assert (first["service_id"], first["job_id"], first["session"]) == ("standin-llm_45755b15", "39",
                                                                           "s-20261125T190624Z-f801")
        assert second == {**second, "level": "error", "msg": "plain", "job_id": "7"} and "session" not in second
    finally:
        set_format("text")


def test_fields_from_job_id_forms():
    assert fields_from("job 12345_7 (x) ended")["job_id"] == "12345_7"
    assert fields_from("nothing here") == {}
