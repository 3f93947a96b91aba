"""Names the targets accept, made from stack names. Pure.

Invariants: a name that is already valid is kept as it is; one that had to change gets a
short digest of the original, so two different stack names never map to one target name.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL_MAX = 63  # Kubernetes object and container names, label values
PORT_NAME_MAX = 15  # Kubernetes port names (IANA service names)
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def digest(text: str) -> str:
    """A short digest of a name, appended where a name had to change."""
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def is_dns_label(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and bool(_DNS_LABEL.match(text))


def is_label_value(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and bool(_LABEL_VALUE.match(text))


def is_port_name(text: str) -> bool:
    return len(text) <= PORT_NAME_MAX and "--" not in text and bool(_PORT_NAME.match(text))


def dns_label(text: str) -> str:
    """`text` as an RFC 1123 label: lowercase letters, digits and '-', at most 63."""
    if is_dns_label(text):
        return text
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"
    return f"{base[: DNS_LABEL_MAX - 7].rstrip('-')}-{digest(text)}"


def free_label(wanted: str, taken: set[str]) -> str:
    """`wanted` as a DNS label, or, when a stack name already took it, the same with a
    digest: for the names the export makes up (a container the stack did not name)."""
    name, attempt = dns_label(wanted), 0
    while name in taken:
        attempt += 1
        base = dns_label(wanted)[: DNS_LABEL_MAX - 7].rstrip("-")
        name = f"{base}-{digest(f'{wanted}#{attempt}')}"
    return name


def label_value(text: str) -> str:
    return text if is_label_value(text) else dns_label(text)


def port_name(text: str) -> str | None:
    """A Kubernetes port name for a process, or None when none fits; one cut to fit
    keeps a digest of the whole name (two long names never share a port name)."""
    label = dns_label(text)
    if is_port_name(label):
        return label
    base = re.sub(r"-+", "-", label[: PORT_NAME_MAX - 7]).strip("-")
    candidate = f"{base}-{digest(text)}"
    return candidate if is_port_name(candidate) else None
