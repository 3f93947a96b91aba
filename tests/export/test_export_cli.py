"""`supervise export` through its command line: files written with the right modes, the
report as JSON, and bad input refused with exit 2 naming file, key and value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from supervisor.config.load import load_stack
from supervisor.export.emit_yaml import dump, scalar
from supervisor.export.kubernetes import KubernetesOptions, export_kubernetes
from supervisor.export.names import dns_label, is_dns_label, label_value, port_name
from tests.export.exports import reference_stack


def run_export(
    *args: str, cwd: Path, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.export.cli", "export", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=None if environ is None else {**os.environ, **environ},
    )


@pytest.mark.parametrize(
    ("target", "files"),
    [("kubernetes", 6), ("systemd", 26), ("compose", 3)],
)
def test_export_writes_every_file_and_the_report(tmp_path: Path, target: str, files: int) -> None:
    stack = reference_stack(tmp_path)
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run_export(
        target, "-c", str(stack), "-o", str(out), "--report", str(report), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(written) == files
    document = json.loads(report.read_text())
    assert document["target"] == target and sorted(document["files"]) == written
    assert any(f["feature"] == "control API" for f in document["not_mapped"])
    for path in out.rglob("*"):
        if path.is_file():
            private = path.relative_to(out).parts[0] == "secrets"
            assert oct(path.stat().st_mode & 0o777) == ("0o600" if private else "0o644")
    assert f"wrote {files} file(s)" in result.stderr


def test_an_unknown_model_exits_2_naming_it(tmp_path: Path) -> None:
    stack = reference_stack(tmp_path)
    result = run_export("compose", "-c", str(stack), "--model", "gamma", "-o", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{stack}: --model: unknown model 'gamma'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_stack_with_errors_exits_2_with_file_key_and_value(tmp_path: Path) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text('[processes.a]\ncommand = "x"\ndepends_on = { b = "ready" }\n')
    result = run_export("systemd", "-c", str(stack), "-o", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{stack}: processes.a.depends_on.b: unknown process 'b'" in result.stderr


def test_a_published_key_in_a_command_cannot_be_exported(tmp_path: Path) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        '[models.alpha]\nMARKET = "us"\n'
        '[processes.init]\nper_model = true\noneshot = true\ncommand = "true"\n'
        'publishes = ["SIGNATURE"]\n'
        '[processes.trade]\nper_model = true\ncommand = "serve --as ${model.SIGNATURE}"\n'
        'depends_on = { init = "completed" }\n'
    )
    result = run_export("kubernetes", "-c", str(stack), "-o", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert "alpha/trade uses ${model.SIGNATURE}, which is published at run time" in result.stderr


def test_a_secret_interpolated_into_an_ordinary_entry_is_refused(tmp_path: Path) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        '[env]\nDATABASE_URL = "postgres://app:${DB_PASSWORD}@db/app"\n'
        '[processes.web]\ncommand = "true"\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor.export.cli",
            "export",
            "compose",
            "-c",
            str(stack),
            "-o",
            "out",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DB_PASSWORD": "s3cret-pass"},
    )
    assert result.returncode == 2
    assert "compose.yaml would contain the value of the secret DB_PASSWORD" in result.stderr
    assert "s3cret-pass" not in result.stderr
    assert not (tmp_path / "out").exists()


SECRET_USES = {
    "ready probe": 'ready = { http = "http://127.0.0.1:${port}/health?token=${API_TOKEN}" }\n',
    "cwd": 'cwd = "runs/${API_TOKEN}"\n',
}


@pytest.mark.parametrize("target", ["kubernetes", "systemd", "compose"])
@pytest.mark.parametrize("where", sorted(SECRET_USES))
def test_a_secret_from_the_environment_in_a_probe_or_cwd_is_refused(
    tmp_path: Path, target: str, where: str
) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        '[processes.web]\ncommand = "python -m http.server ${port}"\nport = "auto"\n'
        + SECRET_USES[where]
    )
    result = run_export(
        target,
        "-c",
        str(stack),
        "-o",
        "out",
        cwd=tmp_path,
        environ={"API_TOKEN": "s3cr3t-t0ken-value"},
    )
    assert result.returncode == 2, result.stderr
    assert "would contain the value of the secret API_TOKEN" in result.stderr
    assert "s3cr3t-t0ken-value" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("target", "args", "message"),
    [
        ("systemd", ["-o", "afile"], "-o 'afile': exists and is not a directory"),
        ("compose", ["-o", "afile/deploy"], "-o 'afile/deploy': "),
        (
            "kubernetes",
            ["-o", "out", "--report", "reports/export.json"],
            "--report 'reports/export.json': reports is not a directory",
        ),
        ("compose", ["-o", "out", "--report", "."], "--report '.': is a directory"),
        ("systemd", ["-o", "out", "--prefix", "my app"], "--prefix 'my app': a systemd name"),
        ("systemd", ["-o", "out", "--prefix", "a@b"], "--prefix 'a@b': a systemd name"),
        ("compose", ["-o", "out", "--prefix", "My_App"], "--prefix 'My_App': a compose name"),
        ("kubernetes", ["-o", "out", "--namespace", "Bad_NS"], "--namespace 'Bad_NS': not"),
    ],
)
def test_an_output_or_name_option_the_target_cannot_use_exits_2_and_writes_nothing(
    tmp_path: Path, target: str, args: list[str], message: str
) -> None:
    stack = reference_stack(tmp_path)
    (tmp_path / "afile").write_text("not a directory\n")
    result = run_export(target, "-c", str(stack), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"supervise export: {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "supervise.toml"]


def test_a_changed_model_key_changes_only_that_models_config_hash(tmp_path: Path) -> None:
    stack = reference_stack(tmp_path)

    def hashes() -> dict[str, str]:
        files, _, _ = export_kubernetes(load_stack(stack, {}), KubernetesOptions())
        found = {}
        for name, output in files.items():
            if name.endswith(".yaml") and name != "kustomization.yaml":
                doc = next(yaml.safe_load_all(output.text))
                found[name] = doc["spec"]["template"]["metadata"]["annotations"][
                    "supervise/config-hash"
                ]
        return found

    before = hashes()
    stack.write_text(stack.read_text().replace('INITIAL_CASH = "10000"', 'INITIAL_CASH = "20000"'))
    after = hashes()
    assert [name for name in before if before[name] != after[name]] == ["model-alpha.yaml"]


SECRET_STACK = """\
[models.alpha]
BASE_MODEL = "gpt-4.1"
OPENAI_API_KEY = "sk-local-value-0123456789"

[processes.trade]
per_model = true
command = "serve"
inject = ["BASE_MODEL", "OPENAI_API_KEY"]
"""


def test_exporting_again_keeps_what_was_filled_in_and_says_what_changed(tmp_path: Path) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text(SECRET_STACK)
    assert run_export("compose", "-c", str(stack), "-o", "out", cwd=tmp_path).returncode == 0
    keys = tmp_path / "out" / "secrets" / "models" / "alpha.env"
    first = keys.read_text()
    assert "# OPENAI_API_KEY=    <- secret: fill in" in first and "sk-local" not in first
    filled = first.replace("# OPENAI_API_KEY=    <- secret: fill in", "OPENAI_API_KEY=sk-prod-42")
    keys.write_text(filled.replace("BASE_MODEL=gpt-4.1", "BASE_MODEL=edited") + "EXTRA=1\n")
    stale = tmp_path / "out" / "model-beta.yaml"
    stale.write_text("# Generated by `supervise export kubernetes` from supervise.toml\n")
    stack.write_text(SECRET_STACK.replace('"gpt-4.1"', '"gpt-5"'))

    result = run_export("compose", "-c", str(stack), "-o", "out", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = keys.read_text().splitlines()
    assert "OPENAI_API_KEY=sk-prod-42" in lines  # filled in: kept
    assert "BASE_MODEL=gpt-5" in lines  # the stack's value
    assert lines[-1] == "EXTRA=1"  # no longer named by the stack: kept, at the end
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert "kept: secrets/models/alpha.env: the values you filled in for OPENAI_API_KEY" in (
        result.stderr
    )
    assert "replaced: secrets/models/alpha.env: BASE_MODEL" in result.stderr
    assert "EXTRA, which the stack no longer names" in result.stderr
    assert stale.exists() and "left in place: model-beta.yaml" in result.stderr
    assert "sk-prod-42" not in result.stderr


def test_an_existing_key_file_that_cannot_be_read_stops_the_export_before_any_write(
    tmp_path: Path,
) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text(SECRET_STACK)
    assert run_export("compose", "-c", str(stack), "-o", "out", cwd=tmp_path).returncode == 0
    compose = tmp_path / "out" / "compose.yaml"
    before = compose.read_text()
    keys = tmp_path / "out" / "secrets" / "models" / "alpha.env"
    keys.write_text(keys.read_text() + "not a key line\n")
    stack.write_text(SECRET_STACK.replace('"gpt-4.1"', '"gpt-5"'))

    result = run_export("compose", "-c", str(stack), "-o", "out", cwd=tmp_path)

    assert result.returncode == 2
    assert "out/secrets/models/alpha.env: line 6: expected KEY=VALUE, got 'not a key line'" in (
        result.stderr
    )
    assert compose.read_text() == before  # nothing written
    assert "not a key line" in keys.read_text()


@pytest.mark.parametrize(
    "value",
    [
        "yes",
        "No",
        "on",
        "null",
        "~",
        "1",
        "0755",
        "1.5",
        "",
        " lead",
        "a: b",
        "- x",
        "#x",
        "--inject",
        "http://h:1/p?q=1",
        "é",
        'say "hi"',
        "multi\nline",
        "true",
        "3e4",
        "@x",
    ],
)
def test_every_string_the_emitter_writes_reads_back_as_that_string(value: str) -> None:
    assert yaml.safe_load(f"key: {scalar(value)}\n") == {"key": value}


def test_nested_data_reads_back_as_written() -> None:
    data = {"a": [{"b": 1, "c": [True, "x"]}, []], "d": {}, "e": {"f": None}}
    assert yaml.safe_load(dump(data)) == data


@pytest.mark.parametrize(
    ("text", "label", "value", "port"),
    [
        ("trade", "trade", "trade", "trade"),
        ("Alpha_Model.v2", "alpha-model-v2-c8fe8b", "Alpha_Model.v2", "alpha-mo-c8fe8b"),
        (
            "a-very-long-process-name",
            "a-very-long-process-name",
            "a-very-long-process-name",
            "a-very-l-f9fb74",
        ),
        ("agent_x", "agent-x-b88830", "agent_x", "agent-x-b88830"),
        ("123", "123", "123", "123-a665a4"),
    ],
)
def test_names_become_valid_kubernetes_names_and_changed_ones_carry_a_digest(
    text: str, label: str, value: str, port: str | None
) -> None:
    assert (dns_label(text), label_value(text), port_name(text)) == (label, value, port)
    assert is_dns_label(dns_label(text))
