"""The Helm chart: strict lint, Kubernetes 1.30 schemas, and what an operator relies on in the rendered objects."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from bot.locks.backends import load_backends
from bot.settings import Settings
from tests.deploy.chart import CHART, CI_VALUES, CUSTOM_KINDS, KUBE_VERSION, Rendered, load_values, render, validate

CI_IDS = [path.stem for path in CI_VALUES]
TOKEN = re.compile(r"(xox[abpr]|xapp)-[0-9A-Za-z]")  # a token, not the "xoxb-…" of a comment
SECRET_VARIABLES = {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "TFLOCK_DATABASE_URL"}


@pytest.fixture(params=CI_VALUES, ids=CI_IDS)
def ci_values(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_values(request.param)


@pytest.fixture
def rendered(ci_values: dict[str, Any]) -> Rendered:
    return render(ci_values)


def ci(name: str) -> dict[str, Any]:
    return load_values(CHART / "ci" / f"{name}.yaml")


def test_the_four_ci_values_files_exist() -> None:
    assert set(CI_IDS) >= {"socket-mode", "http-ingress", "existing-secret", "replicas-3"}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_chart_lints_strictly(values_file: Path) -> None:
    report = helm_python.lint(CHART, values=load_values(values_file), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error; 1 is info
    assert report["errors"] == []
    assert problems == []
    assert report["total_charts_linted"] == 1


def test_every_rendered_object_is_valid_kubernetes_1_30(rendered: Rendered) -> None:
    assert rendered.objects
    for obj in rendered.objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue  # a CRD: no upstream schema; its fields are asserted in test_service_monitor_scrapes_metrics
        validate(obj)


def test_strict_validation_would_catch_a_misspelt_field(rendered: Rendered) -> None:
    deployment = rendered.deployment
    deployment["spec"]["replicaz"] = 2
    with pytest.raises(Exception, match="replicaz"):
        validate(deployment)


def test_pods_run_as_non_root_with_a_read_only_root_filesystem(rendered: Rendered) -> None:
    for pod in _pod_specs(rendered):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert isinstance(security["runAsUser"], int) and security["runAsUser"] > 0
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        tmp = {v["name"]: v for v in pod["volumes"]}["tmp"]
        assert "emptyDir" in tmp
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["privileged"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_bot_has_liveness_on_healthz_and_readiness_on_readyz(rendered: Rendered) -> None:
    bot = rendered.bot
    assert bot["command"] == ["tflock-bot"] and bot["args"] == ["serve", "--no-migrate"]  # the Job migrates
    assert bot["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert bot["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert bot["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    port = {p["name"]: p["containerPort"] for p in bot["ports"]}["http"]
    assert rendered.env()["TFLOCK_PORT"]["value"] == str(port)


def test_no_slack_token_outside_the_secret(ci_values: dict[str, Any], rendered: Rendered) -> None:
    inline = ci_values.get("secrets", {})
    secrets = [inline[k] for k in ("botToken", "appToken", "signingSecret", "databaseUrl") if inline.get(k)]
    encoded = [base64.b64encode(s.encode()).decode() for s in secrets]
    for obj in rendered.objects:
        if obj["kind"] == "Secret":
            assert set(obj) <= {"apiVersion", "kind", "metadata", "type", "data"}
            continue
        text = yaml.safe_dump(obj)
        assert not TOKEN.search(text), f"{obj['kind']} {obj['metadata']['name']} contains a Slack token"
        for secret in secrets + encoded:
            assert secret not in text, f"{obj['kind']} {obj['metadata']['name']} contains a secret value"
    notes = rendered.texts.get("tflock/templates/NOTES.txt", "")
    assert notes and not TOKEN.search(notes)
    for container in _containers(rendered):
        for entry in container["env"]:
            if entry["name"] in SECRET_VARIABLES and "value" in entry:
                assert entry["value"].startswith("sqlite:"), f"{entry['name']} must come from a Secret"


def test_existing_secret_is_used_by_its_key_names_and_no_secret_is_rendered() -> None:
    rendered = render(ci("existing-secret"))
    assert rendered.all("Secret") == []
    assert not TOKEN.search(rendered.text)
    env = rendered.env()
    assert env["SLACK_BOT_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tflock-credentials", "key": "bot-token"}
    assert env["SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tflock-credentials", "key": "app-token"}
    assert env["TFLOCK_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "tflock-credentials",
        "key": "database-url",
    }
    assert "SLACK_SIGNING_SECRET" not in env  # Socket Mode
    annotations = rendered.deployment["spec"]["template"]["metadata"].get("annotations") or {}
    assert "checksum/secret" not in annotations


def test_rendered_secret_feeds_the_bot_and_restarts_it_when_it_changes() -> None:
    values = ci("socket-mode")
    rendered = render(values)
    secret = rendered.named("Secret", "tflock")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "SLACK_BOT_TOKEN": values["secrets"]["botToken"],
        "SLACK_APP_TOKEN": values["secrets"]["appToken"],
        "TFLOCK_DATABASE_URL": values["secrets"]["databaseUrl"],
    }
    env = rendered.env()
    for name in data:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": name}
    before = rendered.deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    values["secrets"]["botToken"] = "xoxb-rotated"
    after = render(values).deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    assert before != after


def test_http_mode_uses_the_signing_secret_and_socket_mode_the_app_token() -> None:
    http = render(ci("http-ingress")).env()
    socket = render(ci("socket-mode")).env()
    assert "SLACK_SIGNING_SECRET" in http and "SLACK_APP_TOKEN" not in http  # an app token would mean Socket Mode
    assert "SLACK_APP_TOKEN" in socket and "SLACK_SIGNING_SECRET" not in socket


def test_pod_disruption_budget_only_with_more_than_one_replica() -> None:
    three = render(ci("replicas-3"))
    assert three.deployment["spec"]["replicas"] == 3
    pdb = three.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == three.deployment["spec"]["selector"]["matchLabels"]
    assert render(ci("socket-mode")).all("PodDisruptionBudget") == []
    minimum = render({**ci("replicas-3"), "pdb": {"minAvailable": 2}}).one("PodDisruptionBudget")
    assert minimum["spec"] == {"minAvailable": 2, "selector": pdb["spec"]["selector"]}


def test_migrations_run_in_a_pre_install_and_pre_upgrade_hook_job(rendered: Rendered) -> None:
    job = rendered.one("Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["tflock-bot"] and container["args"] == ["db", "upgrade"]
    env = rendered.env(container)
    # No Slack credentials in the migration; the owner's URL to migrate with, the bot's to know whom to grant.
    assert set(env) <= {"TFLOCK_DATABASE_URL", "TFLOCK_MIGRATION_DATABASE_URL", "TFLOCK_LOG_LEVEL"}
    ref = env["TFLOCK_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    secrets = {s["metadata"]["name"]: s for s in rendered.all("Secret")}
    if ref["name"] in secrets:  # the chart's own: it must exist before the Job, as a hook with a lower weight
        hook_secret = secrets[ref["name"]]["metadata"]["annotations"]
        assert hook_secret["helm.sh/hook"] == annotations["helm.sh/hook"]
        assert int(hook_secret["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
        owner = env.get("TFLOCK_MIGRATION_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("key")
        assert set(secrets[ref["name"]]["data"]) == {ref["key"]} | ({owner} if owner else set())
    else:
        assert ref["name"] == rendered.env()["TFLOCK_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    selector = rendered.deployment["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= job_labels.items(), "the bot's selector must not pick up migration pods"


def test_the_migration_job_runs_as_the_owner_role_and_the_bot_never_sees_its_url() -> None:
    existing = render(ci("existing-secret"))
    (job,) = existing.one("Job")["spec"]["template"]["spec"]["containers"]
    env = existing.env(job)
    assert env["TFLOCK_MIGRATION_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "tflock-credentials",
        "key": "migration-database-url",
        "optional": True,  # a Secret from before the two roles still works (one role)
    }
    assert env["TFLOCK_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    assert "TFLOCK_MIGRATION_DATABASE_URL" not in existing.env()

    values = ci("socket-mode")
    rendered = render(values)
    owner_url = values["secrets"]["migrationDatabaseUrl"]
    hook = rendered.named("Secret", "tflock-migrations")
    assert base64.b64decode(hook["data"]["TFLOCK_MIGRATION_DATABASE_URL"]).decode() == owner_url
    bot_secret = rendered.named("Secret", "tflock")
    assert "TFLOCK_MIGRATION_DATABASE_URL" not in bot_secret["data"]
    assert "TFLOCK_MIGRATION_DATABASE_URL" not in rendered.env()
    assert base64.b64encode(owner_url.encode()).decode() not in yaml.safe_dump(rendered.deployment)


def test_socket_mode_needs_no_service_or_ingress() -> None:
    rendered = render(ci("socket-mode"))
    assert rendered.all("Service") == []
    assert rendered.all("Ingress") == []


def test_http_mode_ingress_publishes_only_the_slack_endpoint() -> None:
    rendered = render(ci("http-ingress"))
    service = rendered.one("Service")
    assert service["spec"]["selector"] == rendered.deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = rendered.one("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "tflock.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/slack/events" and path["pathType"] == "Exact"
    assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"hosts": ["tflock.example.com"], "secretName": "tflock-tls"}]
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_service_monitor_scrapes_metrics() -> None:
    rendered = render(ci("http-ingress"))
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    service = rendered.one("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["platform"]}
    # Socket Mode gets a Service only for the ServiceMonitor.
    socket = render({**ci("socket-mode"), "metrics": {"serviceMonitor": {"enabled": True}}})
    assert socket.one("Service") and socket.one("ServiceMonitor") and socket.all("Ingress") == []


def test_service_account_carries_the_iam_role_annotation() -> None:
    rendered = render(ci("socket-mode"))
    account = rendered.one("ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/tflock"}
    assert account["automountServiceAccountToken"] is False
    assert rendered.deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_backends_file_is_mounted_from_a_config_map(tmp_path: Path) -> None:
    values = ci("http-ingress")
    rendered = render(values)
    config_map = rendered.one("ConfigMap")
    assert yaml.safe_load(config_map["data"]["backends.yaml"]) == {"backends": values["backendsFile"]["backends"]}
    mounted = tmp_path / "backends.yaml"
    mounted.write_text(config_map["data"]["backends.yaml"], encoding="utf-8")
    loaded = load_backends(Settings(TFLOCK_BACKENDS_FILE=str(mounted)))  # the bot reads what the chart writes
    assert [b.name for b in loaded.backends] == ["prod", "staging"]
    assert "prod-network" in loaded.aliases
    assert rendered.env()["TFLOCK_BACKENDS_FILE"]["value"] == "/etc/tflock/backends.yaml"
    mount = {m["name"]: m for m in rendered.bot["volumeMounts"]}["backends"]
    assert mount == {"name": "backends", "mountPath": "/etc/tflock", "readOnly": True}
    volume = {v["name"]: v for v in rendered.deployment["spec"]["template"]["spec"]["volumes"]}["backends"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert "checksum/backends" in rendered.deployment["spec"]["template"]["metadata"]["annotations"]

    own = render({**ci("existing-secret"), "backendsFile": {"existingConfigMap": "our-backends"}})
    assert own.all("ConfigMap") == []
    volume = {v["name"]: v for v in own.deployment["spec"]["template"]["spec"]["volumes"]}["backends"]
    assert volume["configMap"]["name"] == "our-backends"


EVERY_SETTING = {
    "slack": {"mode": "socket", "apiUrl": "https://slack-gov.com/api/"},
    "config": {
        "port": 8080,
        "awsRegion": "eu-west-1",
        "dynamodbTable": "terraform-locks",
        "s3Lockfile": "on",
        "s3Buckets": ["acme-tfstate", "acme-*"],
        "approvers": ["U0123ABCD", "S0123ABCD"],
        "auditors": ["U0456EFGH"],
        "approvalsRequired": 2,
        "requestTtl": "15m",
        "staleAfter": "1h30m",
        "allowedChannels": ["C0123ABCD"],
        "watchChannel": "C0ALERTS1",
        "watchInterval": "10m",
        "watchRemindAfter": "6h",
        "holdRemindAfter": "8h",
        "logLevel": "DEBUG",
        "logFormat": "json",
        "awsConnectTimeout": "1s",
        "awsReadTimeout": "3s",
        "awsMaxAttempts": 3,
        "backendConcurrency": 8,
        "lookupQueue": 16,
        "clickQueue": 32,
        "dbConnectTimeout": "2s",
        "dbStatementTimeout": "20s",
    },
    "backendsFile": {"backends": [{"name": "prod", "buckets": ["acme-tfstate"]}]},
}


def test_every_setting_can_be_given_through_values() -> None:
    rendered = render({**ci("socket-mode"), **EVERY_SETTING})
    env = rendered.env()
    aliases = {str(field.validation_alias) for field in Settings.model_fields.values()}
    # HTTP mode only, checked there; the migration Job's alone (the bot never sees the owner role's URL).
    missing = aliases - set(env) - {"SLACK_SIGNING_SECRET", "TFLOCK_MIGRATION_DATABASE_URL"}
    assert not missing, f"settings the chart cannot set: {sorted(missing)}"
    assert "AWS_REGION" in env
    values = {name: entry["value"] for name, entry in env.items() if "value" in entry}
    assert values["TFLOCK_S3_BUCKETS"] == "acme-tfstate,acme-*"
    assert values["TFLOCK_APPROVERS"] == "U0123ABCD,S0123ABCD"
    assert values["TFLOCK_APPROVALS_REQUIRED"] == "2"
    assert values["TFLOCK_STALE_AFTER"] == "1h30m"
    assert values["TFLOCK_PORT"] == "8080"
    assert values["SLACK_API_URL"] == "https://slack-gov.com/api/"
    # The values are ones the bot itself accepts.
    settings = Settings.model_validate({k: v for k, v in values.items() if k != "TFLOCK_BACKENDS_FILE"})
    assert settings.approvals_required == 2 and settings.s3_lockfile == "on"
    for obj in rendered.objects:
        if obj["kind"] not in CUSTOM_KINDS:
            validate(obj)


def test_empty_settings_leave_the_bots_defaults_in_force() -> None:
    env = render(ci("existing-secret")).env()
    for name in ("TFLOCK_REQUEST_TTL", "TFLOCK_STALE_AFTER", "TFLOCK_APPROVERS", "TFLOCK_S3_LOCKFILE"):
        assert name not in env


@pytest.mark.parametrize(
    "change",
    [
        {"replicaz": 3},
        {"config": {"staleAftr": "2h"}},
        {"secrets": {"existingSecret": "x", "keys": {"botTokn": "a"}}},
        {"config": {"staleAfter": "two hours"}},
        {"config": {"approvers": ["alice"]}},
        {"slack": {"mode": "websocket"}},
        {"secrets": {"botToken": "xapp-wrong-kind"}},
    ],
    ids=[
        "unknown-top-level",
        "unknown-nested",
        "unknown-key-name",
        "bad-duration",
        "bad-user-id",
        "bad-mode",
        "bad-token",
    ],
)
def test_schema_rejects_typos_and_malformed_values(change: dict[str, Any]) -> None:
    values = _merge(ci("socket-mode"), change)
    with pytest.raises(helm_python.HelmValuesError):
        render(values)
    report = helm_python.lint(CHART, values=values, strict=True)
    assert report["errors"], "helm lint must report the schema violation"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"image": {"repository": "tflock"}}, "secrets.botToken is required"),
        ({"secrets": {"botToken": "xoxb-1"}}, "secrets.appToken is required in Socket Mode"),
        ({"slack": {"mode": "http"}, "secrets": {"botToken": "xoxb-1"}}, "secrets.signingSecret is required"),
        ({"secrets": {"botToken": "xoxb-1", "appToken": "xapp-1"}}, "secrets.databaseUrl is required"),
        ({"secrets": {"existingSecret": "s", "botToken": "xoxb-1"}}, "leave secrets.botToken"),
        (
            {"secrets": {"existingSecret": "s", "migrationDatabaseUrl": "postgresql://o@h/t"}},
            "migrationDatabaseUrl empty",
        ),
        (
            {"secrets": {"existingSecret": "s"}, "database": {"sqlite": {"enabled": True}}, "replicaCount": 2},
            "one replica only",
        ),
        ({"secrets": {"existingSecret": "s"}, "ingress": {"enabled": True, "host": "h"}}, "needs slack.mode=http"),
        (
            {"secrets": {"existingSecret": "s"}, "slack": {"mode": "http"}, "ingress": {"enabled": True}},
            "ingress.host is required",
        ),
    ],
)
def test_incomplete_values_fail_with_a_message_naming_the_value(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render(values)


def test_default_values_hold_no_credentials() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    assert not TOKEN.search(text)
    defaults = yaml.safe_load(text)
    credentials = ("botToken", "appToken", "signingSecret", "databaseUrl")
    assert [defaults["secrets"][k] for k in credentials] == ["", "", "", ""]
    assert defaults["resources"]["requests"] and defaults["resources"]["limits"]


def test_sqlite_trial_uses_one_pod_and_a_kept_volume() -> None:
    rendered = render(
        {"image": {"repository": "tflock"}, "secrets": {"botToken": "xoxb-1", "appToken": "xapp-1"}}
        | {"database": {"sqlite": {"enabled": True}}}
    )
    assert rendered.all("Job") == []  # `serve` migrates the file it owns
    assert rendered.bot["args"] == ["serve"]
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert rendered.deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert rendered.env()["TFLOCK_DATABASE_URL"]["value"] == "sqlite:////var/lib/tflock/tflock.db"
    assert {"name": "data", "mountPath": "/var/lib/tflock"} in rendered.bot["volumeMounts"]
    assert set(rendered.named("Secret", "tflock")["data"]) == {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"}
    for obj in rendered.objects:
        validate(obj)


def test_image_reference_uses_tag_and_digest() -> None:
    assert render(ci("socket-mode")).bot["image"] == "registry.example.com/platform/tflock:0.1.0"
    digest = "sha256:" + "0" * 64
    assert render(ci("http-ingress")).bot["image"] == f"registry.example.com/platform/tflock:0.1.0@{digest}"


def _pod_specs(rendered: Rendered) -> list[dict[str, Any]]:
    return [obj["spec"]["template"]["spec"] for obj in rendered.objects if obj["kind"] in {"Deployment", "Job"}]


def _containers(rendered: Rendered) -> list[dict[str, Any]]:
    return [container for pod in _pod_specs(rendered) for container in pod["containers"]]


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
