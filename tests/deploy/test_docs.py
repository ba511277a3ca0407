"""The operator docs stay true: the configuration reference is generated from the settings class, the install
guide's values render, and the commands and files the docs and the chart rely on exist."""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType
from typing import Any

import pytest
import yaml

from bot.cli import build_parser
from bot.settings import Settings
from tests.deploy.chart import CHART, CUSTOM_KINDS, ROOT, render, validate

DOCS = ROOT / "docs"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_configuration", DOCS / "gen_configuration.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_configuration_reference_is_generated_from_the_settings_class() -> None:
    committed = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert committed == generator().render(), "run: python docs/gen_configuration.py"


def test_every_setting_is_described_and_every_description_is_a_setting() -> None:
    described = set(generator().SETTINGS)
    variables = {str(field.validation_alias) for field in Settings.model_fields.values()}
    assert variables - described == set(), "describe the new settings in docs/gen_configuration.py SETTINGS"
    assert described - variables == set(), "these are no longer settings: remove them from SETTINGS"


def test_generated_defaults_are_the_real_ones() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert "| `TFLOCK_REQUEST_TTL` | `30m` |" in text
    assert "| `TFLOCK_PORT` | `3000` |" in text
    assert "| `TFLOCK_APPROVERS` | empty |" in text
    assert "One of `auto`, `on`, `off`." in text


def test_helm_values_named_in_the_reference_exist() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    module = generator()
    texts = [s.helm for s in module.SETTINGS.values()] + [helm for _n, helm, _m in module.OTHER_VARIABLES]
    paths = {p for text in texts for p in re.findall(r"`([a-zA-Z]+(?:\.[a-zA-Z]+)*)`", text)}
    assert paths
    for path in paths:
        node: Any = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"{path} is not in helm/tflock/values.yaml"
            node = node[part]


def install_values() -> list[dict[str, Any]]:
    text = (DOCS / "install.md").read_text(encoding="utf-8")
    blocks = [b for b in code_blocks(text, "yaml") if b.startswith("# tflock-values.yaml")]
    return [yaml.safe_load(block) for block in blocks]


def test_install_guide_has_values_for_both_modes() -> None:
    modes = {values["slack"]["mode"] for values in install_values()}
    assert modes == {"socket", "http"}


@pytest.mark.parametrize("values", install_values(), ids=lambda v: v["slack"]["mode"])
def test_install_guide_values_render_valid_objects(values: dict[str, Any]) -> None:
    rendered = render(values)
    assert rendered.deployment
    for obj in rendered.objects:
        if obj["kind"] not in CUSTOM_KINDS:
            validate(obj)
    # The guide's Secret keys are the chart's default key names.
    env = rendered.env()
    guide = (DOCS / "install.md").read_text(encoding="utf-8")
    for name in ("SLACK_BOT_TOKEN", "TFLOCK_DATABASE_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name
        assert f"{name}=" in guide


def test_install_guide_json_is_valid_and_names_the_policy_placeholders() -> None:
    text = (DOCS / "install.md").read_text(encoding="utf-8")
    for block in code_blocks(text, "json"):
        json.loads(block)
    policy = (DOCS / "iam-policy.json").read_text(encoding="utf-8")
    for placeholder in (
        "terraform-locks",
        "acme-tfstate",
        "arn:aws:iam::*:role/tflock",
        "OptionalExpandBucketPatterns",
    ):
        assert placeholder in policy and f"`{placeholder}`" in text


def test_install_guide_says_how_ci_builds_and_runs_the_image() -> None:
    text = (DOCS / "install.md").read_text(encoding="utf-8")
    assert "built and run by this repository's CI" in text
    assert "`scripts/image-test.sh`" in text and (ROOT / "scripts" / "image-test.sh").exists()
    for builder in ("docker build", "podman build --format docker", "buildah build --format docker"):
        assert builder in text
    assert "PYTHON_IMAGE=python:3.11.16-slim-bookworm@sha256:" in text


def test_files_the_docs_point_to_exist() -> None:
    for doc in ("install.md", "operations.md"):
        text = (DOCS / doc).read_text(encoding="utf-8")
        for path in re.findall(r"`((?:manifests|docs|helm)/[\w./-]+)`", text):
            assert (ROOT / path).exists(), f"{doc} names {path}, which does not exist"
        for link in re.findall(r"\]\(([\w.-]+\.md)\)", text):
            assert (DOCS / link).exists(), f"{doc} links to {link}, which does not exist"


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["db", "upgrade"],
        ["audit", "verify"],
        ["audit", "query", "--since", "7d", "--format", "csv"],
        ["list"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_commands_the_chart_and_docs_run_exist(command: list[str]) -> None:
    """The migration hook Job runs `db upgrade`; operations.md runs `audit verify` and `audit query`."""
    try:
        build_parser().parse_args(command)
    except SystemExit as exc:
        pytest.fail(f"tflock-bot {' '.join(command)} is not a command (exit {exc.code})")
