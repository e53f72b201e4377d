from orchestrator.cluster.remote import by_name, parse_sections


def test_sections_keep_order_arguments_and_lines():
    text = "noise\n@@ids 7 svc_0123abcd\n@@log 7\nline one\n\n@@log 8\nother\n@@log 7\nlater\n"
    secs = parse_sections(text)
    assert [(s.name, s.args) for s in secs] == [("ids", ["7", "svc_0123abcd"]), ("log", ["7"]), ("log", ["8"]),
                                               ("log", ["7"])]
    assert secs[1].lines == ["line one", ""] and secs[1].text == "line one\n"
    assert by_name(secs)["log"].lines == ["later"]
