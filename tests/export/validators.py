"""Offline validators for exported files (these machines have no cluster).

- Kubernetes: `kubernetes-validate --strict` against a >= 1.29 schema, failing on any line
  that is not INFO (it only warns about kinds it has no schema for), plus semantic checks
  a real API server makes and a schema does not.
- systemd: `systemd-analyze verify --man=no` on every instantiated template, failing on
  any stderr (it exits 0 on unknown keys).
- Compose: the compose-spec JSON schema vendored in tests/export/schema.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from supervisor.export.common import OutputFile
from supervisor.export.names import is_dns_label, is_label_value, is_port_name
from supervisor.secrets import is_secret

KUBERNETES_VERSION = "1.29.0"  # native sidecars are beta (on by default) from here
SCHEMA = Path(__file__).parent / "schema" / "compose-spec.json"
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def write(files: Mapping[str, OutputFile], directory: Path) -> None:
    for name, output in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(output.text)


def manifests(files: Mapping[str, OutputFile]) -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes resource file (not the kustomization), parsed."""
    return {
        name: [d for d in yaml.safe_load_all(f.text) if d]
        for name, f in files.items()
        if name.endswith(".yaml") and name != "kustomization.yaml"
    }


def kubernetes_validate(files: Mapping[str, OutputFile], directory: Path) -> list[str]:
    """Lines of `kubernetes-validate --strict` that are not INFO (empty: all valid)."""
    write(files, directory)
    names = sorted(manifests(files))
    tool = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run(
        [str(tool), "--strict", "-k", KUBERNETES_VERSION, *names],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if not line.startswith("INFO ")]
    if result.returncode != 0 and not problems:
        problems.append(f"kubernetes-validate exited {result.returncode}")
    if len([line for line in lines if line.startswith("INFO ")]) < sum(
        len(docs) for docs in manifests(files).values()
    ):
        problems.append("kubernetes-validate did not pass every resource")
    return problems


def _pods(files: Mapping[str, OutputFile]) -> Iterator[tuple[str, dict[str, Any]]]:
    for docs in manifests(files).values():
        for doc in docs:
            if doc["kind"] == "Deployment":
                yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def kubernetes_semantics(
    files: Mapping[str, OutputFile], secrets: tuple[str, ...] = ()
) -> list[str]:
    """What an API server (or the start gate) would reject that a schema passes."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    kustomization = yaml.safe_load(files["kustomization.yaml"].text)
    objects = [("Secret", g["name"]) for g in kustomization.get("secretGenerator", [])]
    objects += [
        (d["kind"], d["metadata"]["name"]) for docs in manifests(files).values() for d in docs
    ]
    for kind, name in objects:
        if (kind, name) in seen:
            problems.append(f"two objects are {kind} {name} (kustomize: already registered id)")
        seen.add((kind, name))
    selectors = [
        tuple(sorted(d["spec"]["selector"]["matchLabels"].items()))
        for docs in manifests(files).values()
        for d in docs
        if d["kind"] == "Deployment"
    ]
    if len(set(selectors)) != len(selectors):
        problems.append(f"two Deployments select the same Pods: {selectors}")
    for docs in manifests(files).values():
        for doc in docs:
            meta = doc["metadata"]
            if not is_dns_label(meta["name"]):
                problems.append(f"{doc['kind']} name {meta['name']!r} is not an RFC 1123 label")
            labels = dict(meta.get("labels", {}))
            if doc["kind"] == "Deployment":
                template = doc["spec"]["template"]["metadata"]
                labels.update(template.get("labels", {}))
                selector = doc["spec"]["selector"]["matchLabels"]
                if any(template["labels"].get(k) != v for k, v in selector.items()):
                    problems.append(f"{meta['name']}: selector does not match the Pod labels")
            for key, value in labels.items():
                if not _LABEL_KEY.match(key) or not is_label_value(value):
                    problems.append(f"{meta['name']}: label {key}={value!r} is invalid")
            for text in _strings(doc):
                problems += [
                    f"{meta['name']}: contains a secret value" for s in secrets if s in text
                ]
    for pod_name, pod in _pods(files):
        init = pod.get("initContainers", [])
        containers = init + pod["containers"]
        names = [c["name"] for c in containers]
        if len(set(names)) != len(names) or not all(is_dns_label(n) for n in names):
            problems.append(f"{pod_name}: container names {names} are not unique RFC 1123 labels")
        ports = [p["containerPort"] for c in containers for p in c.get("ports", [])]
        if len(set(ports)) != len(ports):
            problems.append(f"{pod_name}: ports {ports} are not unique in the Pod")
        port_names = [p["name"] for c in containers for p in c.get("ports", []) if "name" in p]
        if len(set(port_names)) != len(port_names) or not all(map(is_port_name, port_names)):
            problems.append(f"{pod_name}: port names {port_names} are invalid or repeated")
        for container in init:
            policy = container.get("restartPolicy")
            if policy not in (None, "Always"):
                problems.append(f"{pod_name}/{container['name']}: restartPolicy {policy!r}")
            if "startupProbe" in container and policy != "Always":
                problems.append(f"{pod_name}/{container['name']}: startupProbe on a non-sidecar")
        for container in pod["containers"]:
            if "restartPolicy" in container or "startupProbe" in container:
                problems.append(
                    f"{pod_name}/{container['name']}: sidecar fields on a main container"
                )
        problems += _key_sources(pod_name, containers)
        for container in containers:
            for env in container.get("env", []):
                if is_secret(env["name"]) and "value" in env:
                    problems.append(f"{pod_name}: {env['name']} has a value written out")
    return problems


def _flag_values(command: list[str], flag: str) -> list[str]:
    words = command[: command.index("--")] if "--" in command else command
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == flag]


def _key_sources(pod_name: str, containers: list[dict[str, Any]]) -> list[str]:
    """Every key a container injects comes from a secretKeyRef or a file published earlier."""
    problems: list[str] = []
    published: set[str] = set()
    for container in containers:
        command = container.get("command", [])
        if command[:2] == ["supervise", "exec"]:
            inject = [k for v in _flag_values(command, "--inject") for k in v.split(",")]
            refs = {
                e["name"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            files = set(_flag_values(command, "--wait-file") + _flag_values(command, "--env-file"))
            for key in inject:
                if key not in refs and not files & published:
                    problems.append(f"{pod_name}/{container['name']}: {key} has no source")
            if not files <= published:
                problems.append(f"{pod_name}/{container['name']}: waits for {files - published}")
            published.update(_flag_values(command, "--publish-to"))
    return problems


def systemd_verify(
    files: Mapping[str, OutputFile], directory: Path, models: tuple[str, ...]
) -> list[str]:
    """stderr of `systemd-analyze verify` over every (instantiated) unit."""
    write(files, directory)
    units: list[str] = []
    for name in files:
        if "/" in name or not name.endswith((".service", ".socket", ".target", ".path")):
            continue
        stem, _, suffix = name.rpartition(".")
        if stem.endswith("@"):
            units += [f"{stem}{m}.{suffix}" for m in models]
        else:
            units.append(name)
    tool = shutil.which("systemd-analyze")
    assert tool is not None
    result = subprocess.run(
        [tool, "verify", "--man=no", *(str(directory / u) for u in sorted(units))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    problems = result.stderr.splitlines()
    if result.returncode != 0 and not problems:
        problems.append(f"systemd-analyze exited {result.returncode}")
    return problems


def compose_validate(files: Mapping[str, OutputFile]) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    document = yaml.safe_load(files["compose.yaml"].text)
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]
