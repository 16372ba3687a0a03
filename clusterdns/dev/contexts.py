"""Kubeconfig contexts as ``clusterdns dev`` serves them: which ones, their DNS labels and zones.

Context names are free text (``arn:aws:eks:eu-west-1:1234:cluster/prod``,
``gke_proj_zone_name``, ``kind-dev``); each becomes one DNS label under the
suffix (``prod.k8s``).  Two contexts whose names give the same label are a
collision: the later one gets ``-2`` (``-3`` …), and the collision is reported,
so no context silently answers for another.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from ..settings import absolute
from ..sources import KubeConfigError

MAX_LABEL = 63


@dataclass(frozen=True)
class Context:
    name: str  # as the kubeconfig spells it
    label: str  # the DNS label it answers under: <label>.<suffix>
    namespace: str  # its default namespace (the short form `svc` looks there)
    current: bool


def kubeconfig_path(explicit: str | None) -> str:
    """The kubeconfig file, as kubectl finds it (the first of a ``$KUBECONFIG`` list)."""
    if explicit:
        return explicit
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(os.pathsep)[0]
    return os.path.expanduser("~/.kube/config")


def to_label(name: str) -> str:
    """A valid DNS label for a context name: lower case, ``[a-z0-9-]``, at most 63 characters.

    The last path part of an ARN-style name is used (``…:cluster/prod`` → ``prod``).
    """
    text = name.lower().rsplit("/", 1)[-1] if "/" in name else name.lower()
    text = re.sub(r"[^a-z0-9-]+", "-", text).strip("-")
    text = re.sub(r"-{2,}", "-", text)
    if not text:
        text = "ctx-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return text[:MAX_LABEL].rstrip("-")


def assign_labels(names: list[str]) -> tuple[dict[str, str], list[str]]:
    """(context name → label, collision reports), first come first served in kubeconfig order."""
    labels: dict[str, str] = {}
    taken: dict[str, str] = {}  # label → context
    reports = []
    for name in names:
        base = to_label(name)
        label, n = base, 1
        while label in taken:
            n += 1
            suffix = f"-{n}"
            label = base[: MAX_LABEL - len(suffix)] + suffix
        if label != base:
            reports.append(
                f'contexts "{taken[base]}" and "{name}" both make the DNS label "{base}": '
                f'"{name}" answers under "{label}" instead'
            )
        labels[name] = label
        taken[label] = name
    return labels, reports


def read_contexts(path: str, wanted: str = "all") -> tuple[list[Context], list[str]]:
    """The contexts to serve from the kubeconfig at ``path``, and collision reports.

    ``wanted`` is ``all`` or a comma-separated list of context names.  Raises
    :class:`KubeConfigError` for a file that cannot be read or a name it lacks.
    """
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError, TypeError) as exc:
        raise KubeConfigError(f"cannot read contexts from kubeconfig {path}: {exc}") from exc
    if not contexts:
        raise KubeConfigError(f"kubeconfig {path} has no contexts")
    names = [c["name"] for c in contexts]
    if wanted != "all":
        chosen = [n.strip() for n in wanted.split(",") if n.strip()]
        missing = [n for n in chosen if n not in names]
        if missing:
            raise KubeConfigError(
                f"kubeconfig {path} has no context {', '.join(missing)} (it has: {', '.join(names)})"
            )
        contexts = [c for c in contexts if c["name"] in chosen]
    labels, reports = assign_labels([c["name"] for c in contexts])
    current = active["name"] if active else None
    if current not in labels:
        current = contexts[0]["name"]  # the current one is not served: the first served one takes cluster.local
    out = [
        Context(
            name=c["name"],
            label=labels[c["name"]],
            namespace=(c.get("context") or {}).get("namespace") or "default",
            current=c["name"] == current,
        )
        for c in contexts
    ]
    return out, reports


def context_zone(context: Context, suffix: str) -> str:
    """``<label>.<suffix>.``, absolute."""
    return absolute(f"{context.label}.{suffix.strip('.')}")
