"""The Kubernetes manifests render, validate and agree with the server and image."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kserve
import kubernetes.client
import kubernetes_validate
import pytest

from tests.conftest import MCP_IMAGEGEN_BIN
from tests.deploy.conftest import (
    KUBERNETES_VERSION,
    KUSTOMIZATIONS,
    SERVER_KUSTOMIZATIONS,
    config_toml,
    dockerfile_stages,
    env_of,
    exec_form,
    one,
    render,
    server_container,
)

#: Objects of kinds the Kubernetes schemas do not know, validated another way.
CUSTOM_KINDS = {"InferenceService"}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(
    kustomization: str,
) -> None:
    objects = render(kustomization)

    errors = []
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")

    assert objects
    assert errors == []


# --- KServe's InferenceService against the kserve package's own models --------

_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
    # resource.Quantity and IntOrString: "2", 2, "16Gi".
    "ResourceQuantity": (str, int, float),
}


def model_errors(value: Any, type_name: str, where: str) -> list[str]:
    """What in ``value`` the generated OpenAPI model ``type_name`` does not accept.

    Strict: a key no model attribute maps to is an error (a misspelt field that
    the API server would drop or reject), as is a value of the wrong type.
    """
    if generic := re.fullmatch(r"(?:list|List)\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [
            e
            for i, item in enumerate(value)
            for e in model_errors(item, generic[1], f"{where}[{i}]")
        ]
    if generic := re.fullmatch(r"(?:dict\(str, (.+)\)|Dict\[str, (.+)\])", type_name):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        inner = generic[1] or generic[2]
        return [
            e for k, v in value.items() for e in model_errors(v, inner, f"{where}.{k}")
        ]
    if type_name in _SCALARS:
        ok = isinstance(value, _SCALARS[type_name]) and not (
            type_name == "int" and isinstance(value, bool)
        )
        return [] if ok else [f"{where}: expected {type_name}, got {value!r}"]
    model = getattr(kserve, type_name, None) or getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected an object ({type_name})"]
    attributes = {json_key: attr for attr, json_key in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in attributes:
            errors.append(f"{where}.{key}: no such field in {type_name}")
            continue
        field_type = model.openapi_types[attributes[key]]
        errors += model_errors(item, field_type, f"{where}.{key}")
    return errors


def test_the_inference_service_matches_kserves_own_model() -> None:
    service = one(render("kserve"), "InferenceService")

    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert model_errors(service, "V1beta1InferenceService", "InferenceService") == []


def test_the_model_check_catches_a_misspelt_field() -> None:
    # The check above must be able to fail: a field the model does not have.
    service = one(render("kserve"), "InferenceService")
    broken = {**service, "spec": {"predictor": {**service["spec"]["predictor"]}}}
    broken["spec"]["predictor"]["maxReplica"] = 2

    errors = model_errors(broken, "V1beta1InferenceService", "InferenceService")

    assert errors == [
        "InferenceService.spec.predictor.maxReplica: no such field in "
        "V1beta1PredictorSpec"
    ]


# --- consistency with the server ---------------------------------------------


def manifest_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's env, with a stand-in value for each Secret reference."""
    env = {}
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", f"stand-in-for-{var['name'].lower()}")
    return env


@pytest.mark.parametrize("kustomization", SERVER_KUSTOMIZATIONS)
def test_the_configmap_toml_and_every_env_var_are_accepted_by_the_server(
    kustomization: str, tmp_path: Path
) -> None:
    # `mcp-imagegen config` validates fully (plugins, backends, storage) and
    # refuses unknown MCP_IMAGEGEN_* variables: a variable the server does not
    # read, or a TOML it does not accept, fails here with exit 2.
    objects = render(kustomization)
    config = tmp_path / "config.toml"
    config.write_text(config_toml(objects), encoding="utf-8")
    image_env = {
        k: v
        for k, v in _runtime_env().items()
        if k.startswith("MCP_IMAGEGEN_") and k != "MCP_IMAGEGEN_CONFIG"
    }
    env = manifest_env(server_container(objects))

    done = subprocess.run(
        [str(MCP_IMAGEGEN_BIN), "config", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **image_env, **env},
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert all(name.startswith("MCP_IMAGEGEN_") for name in env), env
    for secret in env.values():
        assert secret not in done.stdout + done.stderr


def _runtime_env() -> dict[str, str]:
    """The final stage's ENV: what every container of the image starts with."""
    return env_of(dockerfile_stages()[-1])


@pytest.mark.parametrize("kustomization", SERVER_KUSTOMIZATIONS)
def test_ports_probes_and_user_match_the_server_and_the_image(
    kustomization: str,
) -> None:
    objects = render(kustomization)
    settings = tomllib.loads(config_toml(objects))
    http = settings["server"]["http"]
    container = server_container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    runtime = dockerfile_stages()[-1]
    command = exec_form(runtime.values("CMD")[0])
    port = int(command[command.index("--port") + 1])
    (named,) = container["ports"]
    service_port = one(objects, "Service")["spec"]["ports"][0]

    assert named == {"name": "http", "containerPort": port, "protocol": "TCP"}
    assert http["port"] == port
    assert runtime.values("EXPOSE") == [str(port)]
    assert service_port["targetPort"] == "http"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The image's fixed uid is the one the pod runs as.
    assert runtime.values("USER") == [
        f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The read-only root needs a writable /tmp (HOME in the image), and the TOML
    # mounted where the image's MCP_IMAGEGEN_CONFIG looks.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"
    config_path = Path(_runtime_env()["MCP_IMAGEGEN_CONFIG"])
    assert mounts[str(config_path.parent)] == "config"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # A bind beyond loopback with neither answers 421 to every MCP request.
    assert http.get("public_url") or http.get("allowed_hosts")
    namespace = one(objects, "Deployment")["metadata"]["namespace"]
    service = one(objects, "Service")["metadata"]["name"]
    assert f"{service}.{namespace}.svc.cluster.local:*" in http["allowed_hosts"]


@pytest.mark.parametrize("kustomization", SERVER_KUSTOMIZATIONS)
def test_the_grace_period_outlasts_the_prestop_sleep_and_the_drain(
    kustomization: str,
) -> None:
    objects = render(kustomization)
    http = tomllib.loads(config_toml(objects))["server"]["http"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    pre_stop = server_container(objects)["lifecycle"]["preStop"]["sleep"]["seconds"]

    # Kubernetes counts the preStop hook inside the grace period; SIGTERM comes
    # after it, and the drain needs drain_timeout more.
    assert pod["terminationGracePeriodSeconds"] > pre_stop + http["drain_timeout"]


def test_overlays_differ_where_the_issue_says() -> None:
    dev, production = render("overlays/dev"), render("overlays/production")
    dev_settings = tomllib.loads(config_toml(dev))
    production_settings = tomllib.loads(config_toml(production))

    assert one(dev, "Deployment")["spec"]["replicas"] == 1
    assert dev_settings["storage"]["backend"] == "file"
    assert dev_settings["server"]["auth"]["mode"] == "bearer"
    assert not [o for o in dev if o["kind"] == "HorizontalPodAutoscaler"]
    directory = dev_settings["storage"]["file"]["directory"]
    mounts = {m["mountPath"]: m["name"] for m in server_container(dev)["volumeMounts"]}
    volumes = {
        v["name"]: v
        for v in one(dev, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert "persistentVolumeClaim" in volumes[mounts[directory]]

    assert one(production, "Deployment")["spec"]["replicas"] == 3
    assert one(production, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    assert production_settings["storage"]["backend"] == "s3"
    assert production_settings["server"]["auth"]["mode"] == "jwt"
    assert production_settings["server"]["http"]["stateless"] is True


@pytest.mark.parametrize("kustomization", SERVER_KUSTOMIZATIONS)
def test_the_backend_table_and_network_policy_point_at_the_inference_service(
    kustomization: str,
) -> None:
    objects = render(kustomization)
    settings = tomllib.loads(config_toml(objects))
    service = one(render("kserve"), "InferenceService")
    name = service["metadata"]["name"]
    namespace = service["metadata"]["namespace"]
    (predictor,) = service["spec"]["predictor"]["containers"]
    args = dict(arg.removeprefix("--").split("=", 1) for arg in predictor["args"])
    backend = settings["backends"][settings["generation"]["backend"]]
    egress = one(objects, "NetworkPolicy")["spec"]["egress"]
    to_predictor = [
        rule
        for rule in egress
        if any(
            peer.get("podSelector", {}).get("matchLabels")
            == {"serving.kserve.io/inferenceservice": name}
            for peer in rule["to"]
        )
    ]

    assert (
        service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
        == "RawDeployment"
    )
    assert backend["type"] == "kserve"
    # RawDeployment's Service is <isvc>-predictor, port 80 -> the container port.
    assert backend["url"] == f"http://{name}-predictor.{namespace}.svc.cluster.local"
    assert backend["model"] == args["model_name"]
    assert one(objects, "Deployment")["metadata"]["namespace"] == namespace
    assert [rule["ports"] for rule in to_predictor] == [
        [{"port": int(args["http_port"]), "protocol": "TCP"}]
    ]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_no_secret_values_are_committed(kustomization: str) -> None:
    objects = render(kustomization)

    assert not [o for o in objects if o["kind"] == "Secret"]
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for var in server_container(objects).get("env", []):
            assert "value" not in var or not var["name"].endswith(
                ("TOKEN", "TOKENS", "SECRET_ACCESS_KEY", "ACCESS_KEY_ID", "URL_SECRET")
            ), var
