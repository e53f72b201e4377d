"""The models a client names, checked against what a vLLM service serves: from its recipe before any
job, from its own /v1/models once it runs; and cache: cold on a service the session did not start."""

import json
from types import SimpleNamespace

import pytest

from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.bench.session import BenchmarkSession
from orchestrator.config import Config, RemoteConfig, SlurmConfig, SSHConfig
from orchestrator.errors import RecipeError
from orchestrator.state import ServiceRecord


class Servers:
    """Answers a probe's ``then`` as the service would (the login node's curl), and counts submissions."""

    def __init__(self, answers: dict[str, str], engine: str = "vllm"):
        self.answers, self.asked, self.engine = answers, [], engine
        self.registry = self   # (records: services/registry.py's ServiceRegistry.record)

    def submissions(self) -> int:
        return 0

    def probe(self, ident, then=""):
        self.asked.append(then)
        out = next((v for k, v in self.answers.items() if k in then), None)
        return SimpleNamespace(service_id=ident, then_output=out)

    def record(self, sid):
        return ServiceRecord(sid, engine=self.engine)


def session(text: str, servers: Servers, tmp_path) -> BenchmarkSession:
    cfg = Config(ssh=SSHConfig(host="h"), slurm=SlurmConfig(), remote=RemoteConfig(), state_dir=tmp_path / "state",
                 results_dir=tmp_path)
    orch = SimpleNamespace(config=cfg, servers=servers)
    return BenchmarkSession(orch, load_benchmark_text(text, str(tmp_path / "b.yaml")), tmp_path / "out")


def bench(services: str, client: str) -> str:
    return (f"benchmark:\n  name: b\n  services: [{services}]\n  clients:\n    - kind: openai-chat\n"
            f"      target: vllm\n      requests: 4\n{client}")


def test_a_model_the_vllm_recipe_does_not_serve_is_refused_before_any_job(tmp_path):
    s = session(bench("{recipe: vllm}", "      models: {test-model: 1, lora-x: 1}\n"), Servers({}), tmp_path)
    with pytest.raises(RecipeError, match=r"clients\[0\]\.models: lora-x not served by vllm \(its recipe serves "
                                          r"test-model: VLLM_SERVED_MODEL_NAME"):
        s.deploy.preflight()


def test_a_running_service_is_asked_for_its_models_and_a_missing_one_named(tmp_path):
    models = json.dumps({"data": [{"id": "test-model"}, {"id": "lora-1"}]})
    s = session(bench("{service_id: vllm_0123abcd, as: vllm}", "      payload: {model: lora-2}\n"),
                Servers({"/v1/models": models}), tmp_path)
    s.state.services["vllm"] = "vllm_0123abcd"
    with pytest.raises(RecipeError, match=r"payload.model: lora-2 not served by vllm \(its /v1/models lists "
                                          r"test-model, lora-1\)"):
        s.deploy.check_models({"vllm": "vllm"})


def test_a_client_naming_no_model_sends_the_one_served(tmp_path):
    models = json.dumps({"data": [{"id": "served-name"}]})
    said = []
    s = session(bench("{service_id: vllm_0123abcd, as: vllm}", ""), Servers({"/v1/models": models}), tmp_path)
    s.ctx.say = said.append
    s.state.services["vllm"] = "vllm_0123abcd"
    s.deploy.check_models({"vllm": "vllm"})
    assert s.recipe.clients[0].payload["model"] == "served-name" and "sending 'served-name'" in said[0]


def test_cold_on_a_service_not_started_here_needs_the_engines_reset_route(tmp_path):
    text = bench("{service_id: vllm_0123abcd, as: vllm}", "      cache: cold\n")
    ok = session(text, Servers({"/reset_prefix_cache": '{"success": true}'}), tmp_path)
    ok.deploy._check_cache(ok.recipe.clients[0], "b.yaml: benchmark.clients[0]")
    refused = session(text, Servers({"/reset_prefix_cache": '{"detail": "Not Found"}'}), tmp_path)
    with pytest.raises(RecipeError, match="did not empty it on request .*VLLM_SERVER_DEV_MODE=1"):
        refused.deploy._check_cache(refused.recipe.clients[0], "b.yaml: benchmark.clients[0]")
    llama = session(text, Servers({}, engine="llamacpp"), tmp_path)
    with pytest.raises(RecipeError, match="llama.cpp server has no way to empty it on request"):
        llama.deploy._check_cache(llama.recipe.clients[0], "b.yaml: benchmark.clients[0]")


def test_a_first_request_that_fails_stops_the_session_before_the_load(tmp_path):
    """The load's own first request (its model, path and fields, one token), from the login node: vLLM's
    404 for a model it does not serve stops the session there, quoting the server."""
    refused = '{"object":"error","message":"The model `standin` does not exist."}\n404'
    s = session(bench("{service_id: vllm_0123abcd, as: vllm}", "      payload: {model: standin, top_p: 0.5}\n"),
                Servers({"/v1/chat/completions": refused}), tmp_path)
    s.state.services["vllm"] = "vllm_0123abcd"
    with pytest.raises(RecipeError, match=r"benchmark.clients\[0\]: its first request \(POST /v1/chat/completions to "
                                          r"vllm\) got HTTP 404: .*The model `standin` does not exist.*stopped before"):
        s.deploy.check_first_requests()
    sent = s.deploy.ctx.orch.servers.asked[-1]
    body = json.loads(sent.split("--data-binary ", 1)[1].split(" \"$BASE\"")[0].strip("'"))
    assert body["model"] == "standin" and body["top_p"] == 0.5 and body["max_tokens"] == 1 and not body["stream"]
    assert body["messages"] == [{"role": "user", "content": "Hello"}]
    ok = session(bench("{service_id: vllm_0123abcd, as: vllm}", "      payload: {model: test-model}\n"),
                 Servers({"/v1/chat/completions": '{"choices": []}\n200'}), tmp_path)
    ok.state.services["vllm"] = "vllm_0123abcd"
    ok.deploy.check_first_requests()   # a 2xx answer: the load may start
