"""The production deployment files (deploy/compose.yaml, deploy/helm/iotlm) and what they rely on.

No Docker engine or Kubernetes cluster exists here, so the files are checked with what runs: the
Compose specification's JSON schema (vendored by check-jsonschema), `helm lint` and `helm template`
(Helm built from the Go module proxy by scripts/setup.sh), the rendered manifests against the
Kubernetes 1.37 schemas (kubernetes-validate, strict), and their cross-references against our own
code: every command they run exists, every secret file they mount is one `iotlm stack secrets`
writes. `iotlm stack provision`, which both run first, is exercised against the real test stack.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from iotlm.settings import PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"
CHART = DEPLOY / "helm" / "iotlm"
HELM = shutil.which("helm") or str(Path.home() / ".cache" / "iotlm" / "bin" / "helm")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def run_cli(argv: list[str]) -> str:
    """`iotlm ...` in-process: raises on a nonzero exit (an unknown command or option)."""
    from typer.testing import CliRunner

    from iotlm.cli import app

    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, f"iotlm {' '.join(argv)}: {result.output}"
    return result.output


def iotlm_commands(argv: list[str]) -> list[list[str]]:
    """The `iotlm ...` invocations inside a container command (also inside `sh -c "... exec iotlm ..."`)."""
    if argv[:2] == ["sh", "-c"] or argv[:2] == ["/bin/sh", "-c"]:
        argv = shlex.split(argv[2].split("exec ", 1)[1])
    return [argv[1:]] if argv and argv[0] == "iotlm" else []


def known_to_cli(args: list[str]) -> None:
    """The command and every option it is given exist: `--help` of the command, options looked up."""
    words = [a for a in args if not a.startswith("-")]
    options = [a.split("=")[0] for a in args if a.startswith("--")]
    depth = 1 if words[0] in ("api", "worker", "demo", "simulate") else 2
    help_text = run_cli([*words[:depth], "--help"])
    for option in options:
        assert option in help_text or option.replace("--no-", "--") in help_text, f"iotlm {words[:depth]}: no {option}"


# --- compose ---------------------------------------------------------------------------------------

def compose_errors(doc: dict) -> list[str]:
    """Violations of the Compose specification's schema (the copy check-jsonschema ships; its CLI is not
    used: importing it needs a newer click than faust-streaming allows)."""
    from importlib.util import find_spec

    import jsonschema

    package = Path(find_spec("check_jsonschema").origin).parent  # found, not imported
    schema = json.loads((package / "builtin_schemas" / "vendor" / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_compose_file_is_valid_against_the_compose_specification():
    assert compose_errors(compose()) == []


def test_the_schema_check_catches_a_broken_compose_file():
    """The check above can fail: a service with an unknown key is refused."""
    broken = compose()
    broken["services"]["worker"]["replica"] = 2  # `deploy.replicas` is the real field
    assert any("replica" in error for error in compose_errors(broken))


def test_compose_references_resolve():
    doc = compose()
    services, volumes = doc["services"], set(doc.get("volumes") or {})
    for name, service in services.items():
        for needed in service.get("depends_on") or {}:
            assert needed in services, f"{name} depends on unknown service {needed}"
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
    # the components and the services the project runs
    for wanted in ("kafka", "postgres", "redis", "mosquitto", "grafana", "worker", "api", "mqtt-bridge",
                   "provision", "secrets"):
        assert wanted in services


def test_compose_runs_existing_commands_with_existing_options():
    checked = 0
    for name, service in compose()["services"].items():
        command = service.get("command")
        if not isinstance(command, list) or service.get("image", "").split(":")[0] != "iotlm":
            continue
        for args in iotlm_commands(command):
            known_to_cli(args)
            checked += 1
    assert checked >= 6  # secrets, provision, api, bridge, grafana export, (jobs)


def test_every_secret_file_compose_mounts_is_written_by_iotlm_stack_secrets(tmp_path):
    from deploy.provision import write_secrets

    written = {str(p.relative_to(tmp_path)) for p in write_secrets(Settings(state_dir=tmp_path / "state"), tmp_path)}
    text = (DEPLOY / "compose.yaml").read_text() + (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    referenced = set(re.findall(r"/deploy/([a-z]+/[a-z.\-]+(?:\.json|\.acl|\.properties)?)", text))
    assert referenced, "compose names no secret file"
    assert referenced <= written, f"not written by `iotlm stack secrets`: {sorted(referenced - written)}"


# --- secrets and provision --------------------------------------------------------------------------

def test_stack_secrets_gives_each_component_only_its_own_passwords(tmp_path):
    from deploy.provision import COMPONENT_PASSWORDS, write_secrets

    settings = Settings(state_dir=tmp_path / "state")
    first = write_secrets(settings, tmp_path / "out")
    for path in first:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    everything = {f"{service}.{principal}": password
                  for service in ("kafka", "postgres", "redis", "mqtt")
                  for principal, password in json.loads((tmp_path / "out/secrets" / f"{service}.json").read_text()).items()}
    for component, keys in COMPONENT_PASSWORDS.items():
        own = json.loads((tmp_path / "out/components" / f"{component}.json").read_text())
        assert set(own) == set(keys)
        assert all(own[key] == everything[key] for key in keys)
        assert not any(key.endswith(".admin") or key == "postgres.postgres" for key in own)
    # a second run keeps every password (the running services know them)
    write_secrets(settings, tmp_path / "out")
    again = json.loads((tmp_path / "out/secrets/kafka.json").read_text())
    assert all(everything[f"kafka.{p}"] == pw for p, pw in again.items())
    properties = (tmp_path / "out/kafka/server.properties").read_text()
    assert "allow.everyone.if.no.acl.found=false" in properties and "SASL_SSL" not in properties.split("listeners=")[1].split("\n")[0]


def test_a_deployment_names_each_service_by_its_host():
    from iotlm.credentials import database_url, kafka_tls_bootstrap

    base = Settings()
    settings = base.model_copy(update={"stack": base.stack.model_copy(update={
        "kafka_host": "kafka", "postgres_host": "db.example", "redis_host": "redis", "mqtt_host": "mqtt"})})
    assert settings.kafka_bootstrap == f"kafka:{settings.stack.kafka_port}"
    assert kafka_tls_bootstrap(settings).startswith("kafka:")
    assert "@db.example:" in database_url(settings, "worker", with_password=False)
    assert settings.redis_url.startswith("redis://redis:")
    assert settings.mqtt_address == ("mqtt", settings.stack.mqtt_port)
    assert base.kafka_bootstrap.startswith(base.stack.host + ":")  # unset: the one host of the local stack


@pytest.mark.services
def test_provision_readies_the_real_services_and_is_idempotent(settings, stack):
    import psycopg

    from deploy.provision import provision
    from iotlm.credentials import postgres_connect_kwargs

    steps: list[str] = []
    outcome = provision(settings, progress=steps.append)
    assert steps[0] == "Kafka users" and len(steps) == 5
    assert outcome["lane"] == "postgresql" and outcome["timescaledb_extension"] is False  # Debian's PostgreSQL
    assert outcome["redis_acl_loaded"] is True
    assert provision(settings)["topics_created"] == []  # again: nothing new
    with psycopg.connect(**postgres_connect_kwargs(settings, "worker"), sslmode="disable") as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "iotlm_worker"


# --- Helm -------------------------------------------------------------------------------------------

def helm(*args: str) -> str:
    assert Path(HELM).exists(), f"helm not found at {HELM}: scripts/setup.sh builds it"
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rendered(*values: str) -> list[dict]:
    sets = [arg for value in values for arg in ("--set", value)]
    return [doc for doc in yaml.safe_load_all(helm("template", "rel", str(CHART), *sets)) if doc]


def test_helm_lint_is_clean():
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values", [(), ("worker.autoscaling.enabled=false", "bridge.enabled=false",
                                         "jobs.enabled=false", "provision.enabled=false")])
def test_rendered_manifests_are_valid_kubernetes(values):
    import kubernetes_validate

    docs = rendered(*values)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_kubernetes_validation_catches_a_broken_manifest():
    import kubernetes_validate

    deployment = next(d for d in rendered() if d["kind"] == "Deployment")
    deployment["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.37.0", strict=True)


def test_the_chart_scales_workers_on_consumer_lag_and_gives_each_pod_only_its_passwords():
    docs = rendered()
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    hpa = by_kind["HorizontalPodAutoscaler"][0]
    assert hpa["spec"]["scaleTargetRef"]["name"].endswith("-worker")
    metric = hpa["spec"]["metrics"][0]["external"]
    assert metric["metric"]["selector"]["matchLabels"]["consumergroup"] == "iotlm-workers"
    worker = next(d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-worker"))
    assert "replicas" not in worker["spec"]  # the HPA owns the count
    for deployment in by_kind["Deployment"]:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        keys = [e["valueFrom"]["secretKeyRef"]["key"] for e in container.get("env", []) if "valueFrom" in e]
        assert keys == [{"mqtt-bridge": "bridge"}.get(component, component) + ".json"], component
        assert not any(v.get("secret") for v in deployment["spec"]["template"]["spec"].get("volumes", []))
        for args in iotlm_commands(container["command"]):
            known_to_cli(args)
    job = by_kind["Job"][0]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert iotlm_commands(job["spec"]["template"]["spec"]["containers"][0]["command"]) == [["stack", "provision", "--json"]]


def test_every_component_password_set_the_chart_mounts_exists():
    from deploy.provision import COMPONENT_PASSWORDS

    for doc in rendered():
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for env in container.get("env", []):
                if "valueFrom" in env:
                    assert env["valueFrom"]["secretKeyRef"]["key"].removesuffix(".json") in COMPONENT_PASSWORDS
