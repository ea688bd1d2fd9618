"""Static checks of deploy/: no Docker engine or Kubernetes cluster is needed.

* Kubernetes manifests: every document against the API schemas (``kubernetes-validate``,
  strict: unknown fields fail), and the kustomize build when ``kubectl`` is installed.
* compose.yaml: ``docker compose config`` when the compose plugin is installed;
  always a structural check in Python (references, mounts, variables, users).
* Dockerfile: the essentials a linter like hadolint would flag, checked in Python.
* Both deployments wire the NATS configuration the same way (variables, routes, users).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from threadline.base.config import Settings
from threadline.services.runtime.natsconf import production_hosts
from threadline.services.runtime.natsusers import roles

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSIONS = ("1.30.0", "1.33.0")
CONF_TEXT = (DEPLOY / "nats/nats-server.conf").read_text()
CONF_VARS = sorted(set(re.findall(r":\s*\$([A-Z][A-Z0-9_]*)\b", CONF_TEXT)))  # `key: $VAR`
SERVICE_USERS = {"agent": "agent", "projector": "projector", "gateway": "gateway"}


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_api_schemas(version: str) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate==1.37.0 missing"
    )
    docs = k8s_docs()
    assert len(docs) >= 10
    for name, doc in docs:
        kv.validate(doc, version, strict=True)  # raises, naming the field, on any error
        assert doc["metadata"]["name"], name


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_build_renders_valid_objects() -> None:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="dev dependency kubernetes-validate==1.37.0 missing"
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]
    for doc in rendered:
        kv.validate(doc, K8S_VERSIONS[-1], strict=True)
    configs = {
        d["metadata"]["name"].rsplit("-", 1)[0]: d for d in rendered if d["kind"] == "ConfigMap"
    }
    conf = configs["nats-config"]["data"]["nats-server.conf"]
    assert conf == (DEPLOY / "nats/nats-server.conf").read_text()
    streams = {path.name: path.read_text() for path in (DEPLOY / "nats").glob("*.json")}
    assert configs["nats-stream"]["data"] == streams


def test_kubernetes_wiring() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_docs()}
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for ref in kustomization["resources"]:
        assert (DEPLOY / ref).is_file(), ref
    for gen in kustomization["configMapGenerator"]:
        assert all((DEPLOY / f).is_file() for f in gen["files"]), gen
    nats = docs[("StatefulSet", "nats")]
    assert nats["spec"]["replicas"] == 3 and nats["spec"]["serviceName"] == "nats"
    assert docs[("Service", "nats")]["spec"]["clusterIP"] == "None"
    assert production_hosts() == [f"nats-{i}.nats" for i in range(3)]  # pod.service names
    pod = nats["spec"]["template"]["spec"]
    spread = pod["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    env = {e["name"] for e in pod["containers"][0]["env"]}
    assert set(CONF_VARS) <= env, "every $VAR of nats-server.conf must be set"
    assert docs[("PodDisruptionBudget", "nats")]["spec"]["maxUnavailable"] == 1
    replicas = {"threadline-agent": 2, "threadline-gateway": 2, "threadline-projector": 1}
    for name, count in replicas.items():
        deployment = docs[("Deployment", name)]
        assert deployment["spec"]["replicas"] == count, name
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        url = next(e["value"] for e in container["env"] if e["name"] == "THREADLINE_NATS_URL")
        assert url.startswith(f"nats://{name.split('-')[1]}:$(NATS_PASSWORD)@nats:"), url
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for _, doc in k8s_docs():
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert ":" in c["image"] and not c["image"].endswith(":latest"), c["image"]


def test_the_stream_job_makes_the_stream_and_every_bucket() -> None:
    """Kubernetes and compose hand the admin's job every file of deploy/nats/*.json
    (the stream, the key-value buckets) under /etc/threadline/, and it adds them all."""
    wanted = {path.name for path in (DEPLOY / "nats").glob("*.json")}
    assert {"stream.json", "kv-snapshots.json", "kv-sessions.json"} <= wanted
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_docs()}
    job = docs[("Job", "nats-stream")]["spec"]["template"]["spec"]["containers"][0]
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    generated = next(g for g in kustomization["configMapGenerator"] if g["name"] == "nats-stream")
    assert {Path(f).name for f in generated["files"]} == wanted
    service = compose()["services"]["nats-stream"]
    mounted = {m.split(":")[1] for m in service["volumes"] if m.startswith("./nats/")}
    assert mounted == {f"/etc/threadline/{name}" for name in wanted}
    loop = 'for f in /etc/threadline/*.json; do nats stream add --config "{}" || exit 1; done'
    assert job["command"] == ["sh", "-c", loop.format("$f")]
    assert service["command"] == ["sh", "-c", loop.format("$$f")]  # $$: compose's escape


def compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(
    not compose_plugin(),
    reason="the docker compose plugin is not installed (test_compose_structure still runs)",
)
def test_docker_compose_config_accepts_the_file() -> None:
    env = os.environ | {name: "p0" for name in env_example()}
    subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
        env=env,
        check=True,
    )


def env_example() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_structure() -> None:
    spec = compose()
    services: dict[str, Any] = spec["services"]
    expected = {"nats-0", "nats-1", "nats-2", "nats-stream", "postgres", "agent", "projector"}
    assert expected | {"gateway-0", "gateway-1"} == set(services)
    assert services["agent"]["deploy"]["replicas"] == 2
    volumes = set(spec["volumes"])
    ports: list[str] = []
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            context = DEPLOY / svc["build"]["context"]
            assert (context / svc["build"]["dockerfile"]).is_file(), name
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] in {"service_healthy", "service_completed_successfully"}
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                path = DEPLOY / source
                assert path.exists() or path.parent.name == "tls", (name, source)
            else:
                assert source in volumes, (name, source)
        ports += svc.get("ports", [])
    assert len(ports) == len(set(ports))
    text = (DEPLOY / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used <= set(env_example()), used - set(env_example())


def test_compose_nats_nodes_and_service_users() -> None:
    services = compose()["services"]
    for i, host in enumerate(production_hosts()):
        node = services[f"nats-{i}"]
        assert set(CONF_VARS) <= set(node["environment"]), node["environment"]
        assert node["environment"]["NATS_SERVER_NAME"] == f"nats-{i}"
        assert {host, "nats"} <= set(node["networks"]["default"]["aliases"])
        assert "./nats/nats-server.conf:/etc/nats/nats-server.conf:ro" in node["volumes"]
    known_users = {role.user for role in roles()}
    settings_vars = {f"THREADLINE_{f.name.upper()}" for f in msgspec.structs.fields(Settings)}
    for name, svc in services.items():
        env = svc.get("environment", {})
        for var in env:
            if var.startswith("THREADLINE_"):
                ok = var in settings_vars or var.startswith(
                    ("THREADLINE_JWT_", "THREADLINE_GATEWAY_")
                )
                assert ok, f"{name}: {var} is not a Threadline setting"
        url = env.get("THREADLINE_NATS_URL")
        if url:
            user = re.match(r"nats://(\w+):", url)
            assert user and user.group(1) in known_users, (name, url)
            assert SERVICE_USERS[name.split("-")[0]] == user.group(1)


def test_dockerfile_essentials() -> None:
    """What hadolint (not installable here) would catch, plus our own rules."""
    lines = [
        line.strip()
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms and all(f.split()[1] == "python:3.11-slim" for f in froms)
    user = [i for i, line in enumerate(lines) if line.startswith("USER ")]
    assert user and lines[user[-1]].split()[1].split(":")[0] not in {"root", "0"}
    assert user[-1] < lines.index('ENTRYPOINT ["threadline"]')  # exec form, as the user
    pip = [line for line in lines if "pip install" in line]
    assert pip and all("--no-cache-dir" in line for line in pip)
    assert not [line for line in lines if line.startswith("ADD ")]
    assert not re.search(r"(?i)ENV .*(KEY|TOKEN|PASSWORD|SECRET)", "\n".join(lines))
    copied = " ".join(line for line in lines if line.startswith("COPY "))
    for needed in ("pyproject.toml", "setup.py", "README.md", "events", "services", "projections"):
        assert needed in copied, needed
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # an allow-list: no .venv, .git or local data in the context
