"""Small stacks, one feature each, exported for every target: each export passes that
target's validator, and the feature maps the way the table says."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.config.load import load_stack
from supervisor.export.build import build_plan
from supervisor.export.common import ExportError, OutputFile
from supervisor.export.leaks import check_no_secrets
from tests.export.exports import SUPERVISE, export
from tests.export.validators import (
    compose_validate,
    kubernetes_semantics,
    kubernetes_validate,
    manifests,
    systemd_verify,
)

BASE = """
[models.alpha]
SIGNATURE = "alpha-v1"
"""

STACKS: dict[str, str] = {
    "tcp probe on all interfaces": """
[processes.api]
per_model = true
command = "python -m http.server ${port} --bind 0.0.0.0"
port = 9000
ready = { tcp = "0.0.0.0:${port}" }
[processes.client]
per_model = true
command = "python -c pass"
depends_on = { api = "ready" }
""",
    "exec probe": """
[processes.db]
per_model = true
command = "python -m http.server ${port}"
port = "auto"
inject = ["SIGNATURE"]
ready = { exec = "python -c 'import sys; sys.exit(0)'" }
[processes.app]
per_model = true
command = "python -c pass"
depends_on = { db = "ready" }
""",
    "log probe": """
[processes.worker]
per_model = true
command = "python -u -c 'print(\\"serving\\")'"
ready = { log = "^serving" }
[processes.app]
per_model = true
command = "python -c pass"
depends_on = { worker = "ready" }
""",
    "notify probe": """
[processes.worker]
per_model = true
command = "python worker.py"
ready = { notify = true }
stop_signal = "SIGINT"
[processes.app]
per_model = true
command = "python -c pass"
depends_on = { worker = "started" }
""",
    "a global oneshot gates a global server": """
[processes.migrate]
oneshot = true
command = "python -c pass"
[processes.db]
command = "python -m http.server ${port}"
port = "auto"
depends_on = { migrate = "completed" }
ready = { http = "http://127.0.0.1:${port}/" }
[processes.app]
per_model = true
command = "python -c pass"
inject = ["SIGNATURE"]
env = { DB_URL = "http://127.0.0.1:${db.port}/" }
depends_on = { db = "ready" }
""",
    "secrets are referenced, never written": """
[env]
SERVICE_TOKEN = "${SERVICE_TOKEN}"
[models.alpha]
SIGNATURE = "alpha-v1"
OPENAI_API_KEY = "sk-live-1234567890"
[processes.agent]
per_model = true
command = "python -c pass"
inject = ["SIGNATURE", "OPENAI_API_KEY"]
env = { DB_PASSWORD = "${DB_PASSWORD}" }
""",
    "a key nothing provides": """
[processes.agent]
per_model = true
command = "python -c pass"
inject = ["SIGNATURE", "MARKET"]
""",
    "only keys nothing provides": """
[models.alpha]
[processes.srv]
per_model = true
command = "python -m app"
inject = ["OPENAI_API_KEY"]
""",
    "a oneshot after the server it seeds": """
[processes.api]
per_model = true
command = "python -m http.server ${port}"
port = "auto"
ready = { http = "http://127.0.0.1:${port}/" }
[processes.seed]
per_model = true
oneshot = true
command = "python -c pass"
depends_on = { api = "ready" }
[processes.hold]
oneshot = true
command = "python -c pass"
""",
    "names that would collide": """
[env]
SERVICE_TOKEN = "${SERVICE_TOKEN}"
[models.global]
SIGNATURE = "g-v1"
[models.env]
MARKET = "eu"
[processes.db]
command = "python -m http.server ${port}"
port = "auto"
[processes.wait-db]
per_model = true
command = "python -c pass"
inject = ["SIGNATURE"]
depends_on = { db = "started" }
[processes.market-data-feed]
per_model = true
command = "python -m http.server ${port}"
port = "auto"
[processes.market-data-feeder]
per_model = true
command = "python -m http.server ${port}"
port = "auto"
""",
    "an odd model name": """
[models."Alpha_Model.v2"]
SIGNATURE = "odd"
[processes.agent_x]
per_model = true
command = "python -c pass"
inject = ["SIGNATURE"]
port = "auto"
""",
}
ENVIRON = {"SERVICE_TOKEN": "tok-abcdef123", "DB_PASSWORD": "hunter2hunter2"}
SECRETS = ("sk-live-1234567890", "tok-abcdef123", "hunter2hunter2")


def stack_file(tmp_path: Path, name: str) -> Path:
    text = STACKS[name]
    if "[models." not in text:
        text = BASE + text
    path = tmp_path / "supervise.toml"
    path.write_text(text)
    return path


def models_of(path: Path) -> tuple[str, ...]:
    return tuple(load_stack(path, ENVIRON).stack.models)


@pytest.mark.parametrize("name", sorted(STACKS))
def test_every_small_stack_passes_kubernetes_validation_and_the_semantic_checks(
    tmp_path: Path, name: str
) -> None:
    path = stack_file(tmp_path, name)
    for mode in ("native", "embedded"):
        files, _ = export("kubernetes", path, ENVIRON, mode=mode)
        assert kubernetes_validate(files, tmp_path / mode) == []
        assert kubernetes_semantics(files, SECRETS) == []


@pytest.mark.parametrize("name", sorted(STACKS))
def test_every_small_stack_passes_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install -y systemd)")
    path = stack_file(tmp_path, name)
    files, _ = export("systemd", path, ENVIRON, supervise=SUPERVISE)
    assert systemd_verify(files, tmp_path / "units", models_of(path)) == []


@pytest.mark.parametrize("name", sorted(STACKS))
def test_every_small_stack_matches_the_compose_spec_schema(tmp_path: Path, name: str) -> None:
    files, _ = export("compose", stack_file(tmp_path, name), ENVIRON)
    assert compose_validate(files) == []


@pytest.mark.parametrize("target", ["kubernetes", "systemd", "compose"])
def test_no_secret_value_reaches_any_generated_file(tmp_path: Path, target: str) -> None:
    path = stack_file(tmp_path, "secrets are referenced, never written")
    files, _ = export(target, path, ENVIRON)
    for name, output in files.items():
        for secret in SECRETS:
            assert secret not in output.text, f"{name} contains a secret"
    check_no_secrets({n: f.text for n, f in files.items()}, build_plan(load_stack(path, ENVIRON)))
    keys = files["secrets/models/alpha.env"].text
    assert "# OPENAI_API_KEY=" in keys and "SIGNATURE=alpha-v1" in keys


def _pod(files: dict[str, OutputFile], model: str = "alpha") -> dict[str, Any]:
    pod: dict[str, Any] = manifests(files)[f"model-{model}.yaml"][0]["spec"]["template"]["spec"]
    return pod


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == name
    )
    return found


def _compose(files: dict[str, OutputFile]) -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(files["compose.yaml"].text)["services"]
    return services


Check = Callable[[dict[str, OutputFile], dict[str, OutputFile], dict[str, OutputFile]], None]


def _tcp(k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]) -> None:
    assert _container(_pod(k8s), "api")["startupProbe"]["tcpSocket"] == {"port": 9000}
    assert "--tcp 0.0.0.0:9000" in sd["supervise-api@alpha.service.d/50-model.conf"].text
    assert _compose(dc)["alpha.client"]["depends_on"]["alpha.api"] == {
        "condition": "service_healthy"
    }


def _exec(k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]) -> None:
    command = _container(_pod(k8s), "db")["startupProbe"]["exec"]["command"]
    assert command[:2] == ["supervise", "exec"] and "SIGNATURE" in command
    assert "ExecStartPost=" in sd["supervise-db@alpha.service.d/50-model.conf"].text
    assert _compose(dc)["alpha.db"]["healthcheck"]["test"][:3] == ["CMD", "supervise", "exec"]


def _log(k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]) -> None:
    worker = _container(_pod(k8s), "worker")
    assert "--ready-log" in worker["command"] and "--ready-file" in worker["command"]
    assert worker["startupProbe"]["exec"]["command"][:4] == [
        "supervise",
        "wait",
        "--file",
        "/run/supervise/handoff/worker.ready",
    ]
    assert "Type=notify" in sd["supervise-worker@.service"].text
    assert '--ready-log "^serving"' in sd["supervise-worker@alpha.service.d/50-model.conf"].text
    assert "--ready-file" in _compose(dc)["alpha.worker"]["entrypoint"]


def _notify(
    k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]
) -> None:
    assert "--ready-notify" in _container(_pod(k8s), "worker")["command"]
    unit = sd["supervise-worker@.service"].text
    assert "Type=notify" in unit and "KillSignal=SIGINT" in unit
    assert "--ready-notify" not in sd["supervise-worker@alpha.service.d/50-model.conf"].text
    assert _compose(dc)["alpha.worker"]["stop_signal"] == "SIGINT"


def _global(
    k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]
) -> None:
    pod = manifests(k8s)["global.yaml"][0]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["migrate"]
    app = _pod(k8s)
    assert _container(app, "wait-db")["command"][:4] == [
        "supervise",
        "wait",
        "--http",
        "http://supervise-db:8001/",
    ]
    assert {"name": "DB_URL", "value": "http://supervise-db:8001/"} in _container(app, "app")["env"]
    assert "Requires=supervise-migrate.service" in sd["supervise-db.service"].text
    assert _compose(dc)["db"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert {"name": "DB_URL", "value": "http://127.0.0.1:8001/"} not in _container(app, "app")[
        "env"
    ]


def _secrets(
    k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]
) -> None:
    env = _container(_pod(k8s), "agent")["env"]
    assert {
        "name": "OPENAI_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "supervise-alpha", "key": "OPENAI_API_KEY"}},
    } in env
    assert {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "supervise-env-agent", "key": "DB_PASSWORD"}},
    } in env
    assert _container(_pod(k8s), "agent")["envFrom"] == [{"secretRef": {"name": "supervise-env"}}]
    assert "EnvironmentFile=/etc/supervise/env-agent.env" in sd["supervise-agent@.service"].text
    assert _compose(dc)["alpha.agent"]["env_file"] == [
        "./secrets/env.env",
        "./secrets/env-agent.env",
    ]


def _unsourced(
    k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]
) -> None:
    assert "# MARKET=    <- injected by agent" in k8s["secrets/models/alpha.env"].text
    refs = [e["name"] for e in _container(_pod(k8s), "agent")["env"] if "valueFrom" in e]
    assert refs == ["SIGNATURE", "MARKET"]


def _only_unsourced(
    k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]
) -> None:
    """The key is filled in to the model's key file, so every target must read it."""
    assert "# OPENAI_API_KEY=    <- injected by srv" in sd["secrets/models/alpha.env"].text
    drop_in = sd["supervise-srv@alpha.service.d/50-model.conf"].text
    assert "LoadCredential=keys:/etc/supervise/models/alpha.env" in drop_in
    assert "exec --env-file %d/keys --inject OPENAI_API_KEY" in drop_in
    assert "supervise-keys@%i.path" in sd["supervise-model@.target"].text
    srv = _compose(dc)["alpha.srv"]
    assert srv["entrypoint"][:4] == ["supervise", "exec", "--env-file", "/run/secrets/keys"]
    assert srv["secrets"] == [{"source": "keys-alpha", "target": "keys"}]
    refs = [e["name"] for e in _container(_pod(k8s), "srv")["env"] if "valueFrom" in e]
    assert refs == ["OPENAI_API_KEY"]


def _seed(k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]) -> None:
    """A oneshot stays an init container, run once: the kubelet reruns a main container."""
    for pod, oneshots in ((_pod(k8s), ["seed"]), (_global_pod(k8s), ["hold"])):
        init = [c["name"] for c in pod["initContainers"] if "restartPolicy" not in c]
        assert init == oneshots
        (main,) = pod["containers"]
        assert main["image"] == "registry.k8s.io/pause:3.10" and main["name"] not in oneshots
    assert [c["name"] for c in _pod(k8s)["initContainers"]] == ["api", "seed"]


def _global_pod(files: dict[str, OutputFile]) -> dict[str, Any]:
    pod: dict[str, Any] = manifests(files)["global.yaml"][0]["spec"]["template"]["spec"]
    return pod


def _collide(
    k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]
) -> None:
    """Names the stack chose keep them; names the export makes up yield (semantics check)."""
    names = {n: [d["metadata"]["name"] for d in docs] for n, docs in manifests(k8s).items()}
    assert names["global.yaml"][0] == "supervise-global"
    assert names["model-global.yaml"][0].startswith("supervise-global-")
    assert names["model-env.yaml"][0].startswith("supervise-env-")
    init = [c["name"] for c in _pod(k8s, "global")["initContainers"]]
    assert "wait-db" not in init and init[0].startswith("wait-db-")
    assert _container(_pod(k8s, "global"), "wait-db") in _pod(k8s, "global")["containers"]


def _odd(k8s: dict[str, OutputFile], sd: dict[str, OutputFile], dc: dict[str, OutputFile]) -> None:
    name = next(n for n in manifests(k8s) if n.startswith("model-"))
    deployment = manifests(k8s)[name][0]
    assert deployment["metadata"]["name"].startswith("supervise-alpha-model-v2-")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/instance"] == "Alpha_Model.v2"
    assert "supervise-agent_x@.service" in sd
    assert "Alpha_Model.v2.agent_x" in _compose(dc)


CHECKS: dict[str, Check] = {
    "tcp probe on all interfaces": _tcp,
    "exec probe": _exec,
    "log probe": _log,
    "notify probe": _notify,
    "a global oneshot gates a global server": _global,
    "secrets are referenced, never written": _secrets,
    "a key nothing provides": _unsourced,
    "only keys nothing provides": _only_unsourced,
    "a oneshot after the server it seeds": _seed,
    "names that would collide": _collide,
    "an odd model name": _odd,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_each_feature_maps_onto_every_target_as_the_table_says(tmp_path: Path, name: str) -> None:
    path = stack_file(tmp_path, name)
    k8s, _ = export("kubernetes", path, ENVIRON)
    sd, _ = export("systemd", path, ENVIRON)
    dc, _ = export("compose", path, ENVIRON)
    CHECKS[name](k8s, sd, dc)


def test_a_dollar_reaches_compose_as_one_dollar_not_a_variable_of_the_deployers_shell(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text("DB_PASS=pa$word\n")
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        '[models.alpha]\nMARKET = "e$u"\n'
        '[processes.web]\nper_model = true\ncommand = ["sh", "-c", "echo $$PORT"]\n'
        'port = "auto"\ninject = ["MARKET"]\nenv = { PRICE = "5$$" }\n'
        "ready = { exec = \"sh -c 'test -n $$PORT'\" }\n"
    )
    files, _ = export("compose", stack)
    web = _compose(files)["alpha.web"]
    assert web["entrypoint"][-3:] == ["sh", "-c", "echo $$PORT"]
    assert web["environment"]["PRICE"] == "5$$"
    assert web["healthcheck"]["test"][-1] == "test -n $$PORT"
    assert "DB_PASS=pa$$word" in files["secrets/env.env"].text.splitlines()
    # The Compose secret is mounted as it is and read by `supervise exec`: no escaping.
    assert "MARKET=e$u" in files["secrets/models/alpha.env"].text.splitlines()
    assert compose_validate(files) == []


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_every_systemd_instance_that_reads_the_key_file_loads_it_whatever_the_model_order(
    tmp_path: Path, order: tuple[str, str]
) -> None:
    # SIGNATURE is a static key of model a, published by init for model b.
    keys = {"a": 'SIGNATURE = "a-v1"\n', "b": 'MARKET = "eu"\n'}
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        "".join(f"[models.{m}]\n{keys[m]}" for m in order)
        + '[processes.init]\nper_model = true\noneshot = true\ncommand = "python -c pass"\n'
        'publishes = ["SIGNATURE"]\n'
        '[processes.srv]\nper_model = true\ncommand = "python -m app"\ninject = ["SIGNATURE"]\n'
        'depends_on = { init = "completed" }\n'
    )
    files, _ = export("systemd", stack)
    template = files["supervise-srv@.service"].text
    for model in order:
        unit = template + files[f"supervise-srv@{model}.service.d/50-model.conf"].text
        credential = f"LoadCredential=keys:/etc/supervise/models/{model}.env"
        reads = "--env-file %d/keys" in unit
        assert reads == (model == "a"), unit
        assert (credential in unit) == reads, unit
        assert (f"secrets/models/{model}.env" in files) == reads
    assert "supervise-srv@%i.service" in files["supervise-keys@.service"].text


def test_a_newline_in_a_systemd_argument_or_value_stays_inside_its_line(tmp_path: Path) -> None:
    code = "import os\nprint(os.environ['NOTE'])"
    note = "first line\nExecStartPre=/bin/touch /tmp/x"
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        f"[processes.note]\ncommand = {json.dumps(['python', '-c', code])}\n"
        f"env = {{ NOTE = {json.dumps(note)} }}\n"
    )
    files, _ = export("systemd", stack, supervise=SUPERVISE)
    text = files["supervise-note.service"].text
    assert not any(line.startswith("ExecStartPre=") for line in text.splitlines())
    # systemd reads C escapes inside the quotes of Exec*= and Environment= (systemd.syntax).
    assert "\"import os\\nprint(os.environ['NOTE'])\"" in text
    assert 'Environment="NOTE=first line\\nExecStartPre=/bin/touch /tmp/x"' in text
    if shutil.which("systemd-analyze") is not None:
        assert systemd_verify(files, tmp_path / "units", ()) == []


def test_a_working_directory_with_a_newline_cannot_be_exported_for_systemd(
    tmp_path: Path,
) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text('[processes.note]\ncommand = "true"\ncwd = "data\\nExecStartPre=x"\n')
    with pytest.raises(ExportError, match=r"note: the working directory .* control character"):
        export("systemd", stack)


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("Procfile", "web: python -m http.server $PORT --bind 127.0.0.1\n"),
        (
            "supervise.toml",
            '[processes.web]\ncommand = "python -m http.server ${port}"\nport = 8000\n',
        ),
    ],
)
def test_a_stack_without_models_runs_its_global_units_in_one_embedded_pod(
    tmp_path: Path, file: str, text: str
) -> None:
    stack = tmp_path / file
    stack.write_text(text)
    files, report = export("kubernetes", stack, mode="embedded")
    (deployment,) = manifests(files)["global.yaml"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["supervise", "run", "-c", f"/app/{file}"]
    assert yaml.safe_load(files["kustomization.yaml"].text)["resources"] == ["global.yaml"]
    assert not any("model" in line for line in report.lines())
    assert kubernetes_validate(files, tmp_path / "k8s") == []
    assert kubernetes_semantics(files) == []
