from orchestrator.cluster.remote import Marker, by_name


def test_sections_keep_order_arguments_and_lines():
    mark = Marker("ab12")
    text = "noise\n@@ab12 ids 7 svc_0123abcd\n@@ab12 log 7\nline one\n\n@@ab12 log 8\nother\n@@ab12 log 7\nlater\n"
    secs = mark.parse(text)
    assert [(s.name, s.args) for s in secs] == [("ids", ["7", "svc_0123abcd"]), ("log", ["7"]), ("log", ["8"]),
                                               ("log", ["7"])]
    assert secs[1].lines == ["line one", ""] and secs[1].text == "line one\n"
    assert by_name(secs)["log"].lines == ["later"]


def test_a_log_line_cannot_open_a_section_without_the_calls_token():
    mark = Marker()
    forged = "@@job\n@@ids 1 x\n@@0000 job\nJobState=COMPLETED"
    text = mark.echo("log") and f"@@{mark.token} log\n{forged}\n@@{mark.token} end\n"
    secs = mark.parse(text)
    assert [s.name for s in secs] == ["log", "end"]
    assert secs[0].text == forged


def test_each_call_gets_its_own_token():
    assert Marker().token != Marker().token


def test_split_groups_sections_of_several_probes():
    mark = Marker("t")
    groups = mark.split("@@t ids 1\n@@t job\na\n@@t next\n@@t ids 2\n", "next")
    assert [[s.name for s in g] for g in groups] == [["ids", "job"], ["ids"]]
