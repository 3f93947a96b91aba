"""`supervise export kubernetes`: Deployments that keep the start gate, a Service per
global unit with a port, and a kustomization whose secretGenerator makes each model's
Secret from its generated key file. Pure.

Modes: `native` (default; `native.py`) maps units onto init containers, native sidecars
and main containers; `embedded` (`embedded.py`) runs `supervise run --model M` per Pod
(a stack without models: `supervise run` in one Pod, for its global units).
What either cannot keep is in `losses.py`.

Invariants: no secret value is written (key files name secret keys without values;
Secrets are created from them at apply time); every name is an RFC 1123 label; applying
the output again rolls exactly the Deployments whose config hash changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.config.load import LoadedStack
from supervisor.export.build import build_plan
from supervisor.export.common import ExportPlan, OutputFile, key_file
from supervisor.export.emit_yaml import dump, dump_all
from supervisor.export.kubernetes.embedded import embedded_deployment
from supervisor.export.kubernetes.losses import report_embedded, report_native
from supervisor.export.kubernetes.native import pod_deployment, service
from supervisor.export.kubernetes.objects import HEADER, KubernetesOptions, secret_name
from supervisor.export.names import dns_label
from supervisor.export.report import Report

__all__ = ["KubernetesOptions", "export_kubernetes"]


def export_kubernetes(
    loaded: LoadedStack, options: KubernetesOptions
) -> tuple[dict[str, OutputFile], Report, ExportPlan]:
    """The manifests, the kustomization and the key files, and what they cannot keep.

    Raises:
        ConfigError, ExportError: as `build_plan`.
    """
    prefix = dns_label(options.prefix)
    native = options.mode == "native"
    served = [n for n, p in loaded.stack.processes.items() if not p.per_model and p.port]
    services = {process: dns_label(f"{prefix}-{process}") for process in served}
    plan = build_plan(loaded, options.models, remote_globals=services if native else None)
    report = Report("kubernetes", options.mode)
    header = HEADER.format(file=plan.file.name)
    files: dict[str, OutputFile] = {}
    generators: list[dict[str, object]] = []
    env_secret = _env_secrets(plan, prefix, files, generators)
    resources: list[str] = []
    if native:
        report_native(plan, report, services)
        for model in plan.models:
            if lines := plan.key_lines(model):
                files[f"secrets/models/{model}.env"] = key_file(f"Keys of model {model}.", lines)
                generators.append(
                    {"name": secret_name(prefix, model), "envs": [f"secrets/models/{model}.env"]}
                )
        if plan.global_units:
            documents = [pod_deployment(plan, None, options, prefix, services, env_secret)]
            documents += [
                service(u, options, prefix, services[u.process])
                for u in plan.global_units
                if u.process in services
            ]
            files["global.yaml"] = OutputFile(dump_all(documents, header))
    else:
        report_embedded(plan, report)
        if not plan.models:  # nothing to run per model: one Pod runs the global units
            document = embedded_deployment(loaded, plan, None, options, prefix, env_secret, report)
            files["global.yaml"] = OutputFile(dump_all([document], header))
    for model in plan.models:
        if native:
            document = pod_deployment(plan, model, options, prefix, services, env_secret)
        else:
            document = embedded_deployment(loaded, plan, model, options, prefix, env_secret, report)
        files[f"model-{model}.yaml"] = OutputFile(dump_all([document], header))
    resources = sorted(name for name in files if name.endswith(".yaml"))
    kustomization: dict[str, object] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
    }
    if options.namespace:
        kustomization["namespace"] = options.namespace
    kustomization["resources"] = resources
    if generators:
        kustomization["generatorOptions"] = {"disableNameSuffixHash": True}
        kustomization["secretGenerator"] = generators
    files["kustomization.yaml"] = OutputFile(header + dump(kustomization))
    return files, report, plan


def _env_secrets(
    plan: ExportPlan,
    prefix: str,
    files: dict[str, OutputFile],
    generators: list[dict[str, object]],
) -> Mapping[str, str]:
    """Scope ("" or a process) → Secret name, for env files and secret-looking entries."""
    names: dict[str, str] = {}
    for scope, lines in plan.env_scopes.items():
        stem = "env" if not scope else f"env-{scope}"
        path = f"secrets/{stem}.env"
        title = "Env files and secret [env] entries" if not scope else f"Secret env of {scope}"
        files[path] = key_file(f"{title}.", lines)
        names[scope] = dns_label(f"{prefix}-{stem}")
        generators.append({"name": names[scope], "envs": [path]})
    return names
