"""Render the Helm chart offline (Helm's own library through helm-python-sdk) and look at the objects."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tflock"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSION = "1.30.0"
RELEASE = "tflock"
NAMESPACE = "platform"
# Custom resources: kubernetes-validate has no schema for them, so the tests assert on their fields instead.
CUSTOM_KINDS = {"ServiceMonitor"}


@dataclass(frozen=True)
class Rendered:
    texts: dict[str, str]  # template path → rendered text, NOTES.txt included
    objects: list[dict[str, Any]]

    @property
    def text(self) -> str:
        return "\n".join(self.texts.values())

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [obj for obj in self.all(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} named {name}, rendered {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def bot(self) -> dict[str, Any]:
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["tflock"]
        return containers[0]

    def env(self, container: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        entries = (container or self.bot)["env"]
        names = [entry["name"] for entry in entries]
        assert len(names) == len(set(names)), f"duplicate environment variables: {names}"
        return {entry["name"]: entry for entry in entries}


def load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    assert isinstance(values, dict)
    return values


def render(values: dict[str, Any]) -> Rendered:
    return copy.deepcopy(_render(yaml.safe_dump(values, sort_keys=True)))


@cache
def _render(values_yaml: str) -> Rendered:
    with helm_python.Chart.load(CHART) as chart:
        texts = chart.render(values=yaml.safe_load(values_yaml), name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(texts.items()):
        if path.endswith(".txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(texts={k: v for k, v in texts.items() if v.strip()}, objects=objects)


def validate(obj: dict[str, Any]) -> None:
    """Kubernetes' own schemas for KUBE_VERSION, strict: unknown fields are errors."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
