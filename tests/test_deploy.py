"""deploy/: nginx's error log and the start script's messages as the service's JSON lines
(deploy/jsonlog.py), and the Kubernetes manifests (deploy/kubernetes/) against the Kubernetes API's
schemas and against the image they run. The stack itself: tests/test_front.py; the image and the
manifests' pod under podman: deploy/image-check."""

import json
import logging
import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from flask import Flask

from app import api
from app.logs import JsonFormatter
from tests.conftest import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest and the newest Kubernetes releases whose schemas kubernetes-validate bundles.
KUBERNETES_RELEASES = ("1.25", kubernetes_validate.latest_version())


def relay(lines: bytes, logger="nginx", level="error"):
    result = subprocess.run([sys.executable, ROOT / "deploy" / "jsonlog.py", logger, level], input=lines,
                            capture_output=True, timeout=60, check=True)
    assert result.stdout == b""
    return [json.loads(line) for line in result.stderr.decode().splitlines()]


def test_nginx_error_log_lines_become_json_with_nginx_s_level_and_pid():
    """nginx's lines as it writes them: a running server's (with a client's header bytes, quotes and
    a byte that is not UTF-8) and the start-up's; its levels named as Python's logging names them."""
    lines = [
        b'2026/12/08 00:36:43 [crit] 17#17: *1 connect() to unix:/tmp/carclf.dRaiKu/gunicorn.sock failed '
        b'(2: No such file or directory) while connecting to upstream, client: 10.88.0.1, server: , '
        b'request: "GET /readyz HTTP/1.1", host: "127.0.0.1:18000"',
        b'2026/12/08 00:48:31 [error] 18#18: *9 client intended to send too large body: 11534336 bytes, '
        b'client: 10.88.0.1, server: , request: "POST /predict HTTP/1.1", host: "a\\"b\xff"',
        b'2026/12/08 00:48:32 [warn] 18#18: *12 limiting connections by zone "carclf_per_ip", client: 127.0.0.2',
        b'nginx: [emerg] unknown directive "listne" in /tmp/carclf.x/nginx.conf:40',
        b"nginx: configuration file /tmp/carclf.x/nginx.conf test failed",
        b"",
    ]
    records = relay(b"\n".join(lines) + b"\n")
    assert [record["level"] for record in records] == ["critical", "error", "warning", "critical", "error"]
    assert [record["pid"] for record in records[:3]] == [17, 18, 18]
    assert {record["logger"] for record in records} == {"nginx"}
    assert records[0]["message"].startswith("*1 connect() to unix:")
    assert records[1]["message"].endswith('host: "a\\"b\ufffd"')
    assert records[3]["message"] == 'unknown directive "listne" in /tmp/carclf.x/nginx.conf:40'
    assert records[4]["message"] == lines[4].decode()


def test_the_relay_s_lines_have_the_service_s_fields():
    """A line of the start script and a record of the service's JSON formatter: the same keys, the time in
    the same form (UTC, milliseconds)."""
    (script,) = relay(b"gunicorn exited with status 137: stopping\n", logger="deploy.start")
    service = json.loads(JsonFormatter().format(logging.LogRecord("carclf", logging.INFO, "", 0, "m", (), None)))
    assert script.keys() == service.keys()
    assert (script["logger"], script["level"]) == ("deploy.start", "error")
    time_form = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
    assert time_form.fullmatch(script["time"]) and time_form.fullmatch(service["time"])


def manifests():
    """``{file name: resource}`` of every manifest the kustomization lists."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return {name: yaml.safe_load((KUBERNETES / name).read_text()) for name in kustomization["resources"]}


def test_the_kustomization_lists_every_manifest():
    assert set(manifests()) == {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("release", KUBERNETES_RELEASES)
def test_each_manifest_is_valid_for_the_kubernetes_api(release):
    """Strict: a misspelt or misplaced field fails, as `kubectl apply --validate=strict` would."""
    for name, resource in manifests().items():
        kubernetes_validate.validate(resource, release, strict=True)


def test_the_deployment_runs_the_image_as_built():
    """The pod runs what the Dockerfile builds: its user, its port, /healthz and /readyz for the probes,
    /tmp (the only folder it writes) on an emptyDir under a read-only root; one forward pass per core of
    the CPU limit (gunicorn.conf.py would count the node's cores); the Service, the autoscaler and the
    disruption budget aim at its pods."""
    resources = manifests()
    deployment = resources["deployment.yaml"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}\n" in dockerfile and pod["securityContext"]["runAsNonRoot"]
    (port,) = container["ports"]
    assert f"EXPOSE {port['containerPort']}\n" in dockerfile
    served = Flask(__name__)
    served.register_blueprint(api.blueprint)
    routes = {rule.rule for rule in served.url_map.iter_rules()}
    assert {container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"],
            container["startupProbe"]["httpGet"]["path"]} <= routes
    assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["capabilities"] == {
        "drop": ["ALL"]} and container["securityContext"]["allowPrivilegeEscalation"] is False
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp" and {"name": mount["name"], "emptyDir": {}} in pod["volumes"]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["CARCLF_INTERPRETERS"] == container["resources"]["limits"]["cpu"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert resources["service.yaml"]["spec"]["selector"].items() <= labels.items()
    assert resources["pdb.yaml"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = resources["hpa.yaml"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
