"""deploy/: the Kubernetes manifests, rendered and checked without a cluster or a kubectl binary.

The kustomizations are rendered by `render()` below, a small renderer of the subset deploy/
uses (resources, namespace, images, and patches: strategic-merge documents or JSON 6902 lists);
any other kustomization field fails the test rather than being ignored. No Python kustomize on
PyPI is well kept (`kustomize` 0.6.0 is from 2024; `pykustomize` is a 0.1 binding of the Go
binary). Every rendered object is validated against the Kubernetes OpenAPI schemas of
`kubernetes-validate` (strict: unknown fields fail), then checked against the code: a Deployment
per role, probes on paths the app serves, every variable a real setting, secrets from Secrets,
HPAs and PDBs on existing Deployments, the Ingress covering the app's public routes only."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from server.core.metrics import Metrics
from server.core.settings import PLAIN_VARIABLES, ROLES, Settings, env_name, from_env
from server.runtime.app import create_app
from server.runtime.listener import SHUTDOWN_TIMEOUT_S

from .helpers import ADMIN_TOKEN, SECRET

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = "1.33.0"  # the API version validated against (kubernetes-validate ships 1.25-1.37)
KUSTOMIZATIONS = {"base": DEPLOY / "base", "production": DEPLOY / "overlays" / "production"}
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace"}
SCALABLE = {
    "web",
    "relay",
    "payments",
    "notifier",
}  # roles whose work grows with load (see hpa.yaml)
SECRET_NAME = "boxoffice-secrets"
Doc = dict[str, Any]


# ---- the renderer --------------------------------------------------------------------------


def load(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as deploy/ uses it: maps merge, null deletes, lists of named items merge
    by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(x, dict) and "name" in x for x in [*base, *patch]):
        out_list = list(base)
        for item in patch:
            at = [i for i, x in enumerate(out_list) if x["name"] == item["name"]]
            if at:
                out_list[at[0]] = merge(out_list[at[0]], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def json_patch(doc: Doc, ops: list[Doc]) -> Doc:
    """RFC 6902 add / replace / remove (the operations deploy/ uses)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")
        ]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if op["op"] == "remove":
            del node[key]
        elif op["op"] == "replace":
            assert (key in node) if isinstance(node, dict) else key < len(node), op
            node[key] = op["value"]
        elif op["op"] == "add":
            if isinstance(node, list):
                node.insert(len(node) if key == "-" else key, op["value"])
            else:
                node[key] = op["value"]
        else:
            raise AssertionError(f"unsupported JSON patch op {op['op']!r}")
    return doc


def matches(doc: Doc, target: Doc) -> bool:
    return all(
        (doc["kind"] if field == "kind" else doc["metadata"][field]) == value
        for field, value in target.items()
    )


def render(folder: Path) -> list[Doc]:
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(k) <= KUSTOMIZE_FIELDS, f"{folder}: unsupported {set(k) - KUSTOMIZE_FIELDS}"
    docs: list[Doc] = []
    for resource in k.get("resources", []):
        path = (folder / resource).resolve()
        docs += render(path) if path.is_dir() else load(path)
    for patch in k.get("patches", []):
        assert set(patch) <= {"path", "target"}, patch
        body = load(folder / patch["path"])
        if isinstance(body[0], list):  # JSON 6902: needs a target
            assert len(body) == 1 and set(patch["target"]) <= {"kind", "name"}, patch
            hits = [i for i, d in enumerate(docs) if matches(d, patch["target"])]
            assert hits, f"patch {patch['path']} matches nothing"
            for i in hits:
                docs[i] = json_patch(docs[i], body[0])
            continue
        assert len(body) == 1, f"{patch['path']}: one object per strategic-merge patch"
        target = patch.get("target") or {
            "kind": body[0]["kind"],
            "name": body[0]["metadata"]["name"],
        }
        hits = [i for i, d in enumerate(docs) if matches(d, target)]
        assert hits, f"patch {patch['path']} matches nothing"
        for i in hits:
            docs[i] = merge(docs[i], body[0])
    if "namespace" in k:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for container in containers(docs):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                new = image.get("newName", name)
                tag = image.get("newTag", tag)
                container["image"] = f"{new}:{tag}" if tag else new
    return docs


# ---- views of the rendered objects ---------------------------------------------------------


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def containers(docs: list[Doc]) -> list[Doc]:
    return [
        c
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in pod_spec(d)["containers"] + pod_spec(d).get("initContainers", [])
    ]


def deployments_by_role(docs: list[Doc]) -> dict[str, Doc]:
    return {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in of_kind(docs, "Deployment").values()
    }


def app_routes(role: str) -> dict[str, set[str]]:
    """method -> canonical paths served by a process of this role (no server is started)."""
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0",
        database_url="postgresql://127.0.0.1:1/none",
        secret=SECRET,
        admin_token=ADMIN_TOKEN,
        roles=role,
    )
    routes: dict[str, set[str]] = {}
    for route in create_app(settings).router.routes():
        if route.resource is not None:
            routes.setdefault(route.method, set()).add(route.resource.canonical)
    return routes


def setting_variables() -> set[str]:
    return {env_name(f) for f in Settings.__struct_fields__}


def secret_like(variable: str) -> bool:
    """Credentials: secrets, tokens, passwords and connection URLs (which carry passwords).
    Not STRIPE_API_BASE (a stand-in's address, refused in production) nor BOXOFFICE_PUBLIC_URL."""
    if variable in ("STRIPE_API_BASE", "BOXOFFICE_PUBLIC_URL"):
        return False
    return bool(re.search(r"SECRET|TOKEN|PASSWORD|_URL$", variable))


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    return render(KUSTOMIZATIONS[request.param])


# ---- the checks ----------------------------------------------------------------------------


def test_every_object_is_valid_kubernetes(rendered: list[Doc]) -> None:
    assert rendered
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}"
            ) from None
    names = [(d["kind"], d["metadata"]["name"]) for d in rendered]
    assert len(names) == len(set(names)), "an object is defined twice"


def test_every_role_has_one_deployment_running_it(rendered: list[Doc]) -> None:
    by_role = deployments_by_role(rendered)
    assert sorted(by_role) == sorted(ROLES)
    assert len(of_kind(rendered, "Deployment")) == len(ROLES)
    for role, deployment in by_role.items():
        (container,) = pod_spec(deployment)["containers"]
        assert container["args"] == ["python", "-m", "server", role]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_probes_and_ports_are_what_the_app_serves(rendered: list[Doc]) -> None:
    config = of_kind(rendered, "ConfigMap")["boxoffice-config"]["data"]
    for role, deployment in deployments_by_role(rendered).items():
        served = app_routes(role)["GET"]
        (container,) = pod_spec(deployment)["containers"]
        (port,) = container["ports"]
        assert port == {"name": "http", "containerPort": int(config["BOXOFFICE_PORT"])}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["path"] in served, (role, probe)


def test_graceful_shutdown_drains_before_the_kill(rendered: list[Doc]) -> None:
    """preStop pause (the pod leaves the ingress's endpoints), then SIGTERM: websockets closed
    with 1001 at once, requests given SHUTDOWN_TIMEOUT_S; all inside the grace period."""
    for role, deployment in deployments_by_role(rendered).items():
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause + SHUTDOWN_TIMEOUT_S < spec["terminationGracePeriodSeconds"], role
        if role == "web":
            assert pause >= 10  # ingress-nginx picks up endpoint changes within seconds


def test_pods_run_unprivileged_on_a_read_only_root(rendered: list[Doc]) -> None:
    dockerfile_user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert dockerfile_user is not None
    for doc in rendered:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == int(dockerfile_user.group(1))
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"] and container["resources"]["limits"]


def environments(docs: list[Doc]) -> dict[str, dict[str, Any]]:
    """container name -> variable -> its literal value, or ("secret", key), ("config", key)."""
    configs = of_kind(docs, "ConfigMap")
    out: dict[str, dict[str, Any]] = {}
    for container in containers(docs):
        env: dict[str, Any] = {}
        for source in container.get("envFrom", []):
            data = configs[source["configMapRef"]["name"]]["data"]
            env.update({k: ("config", k) for k in data})
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == SECRET_NAME, var
                env[var["name"]] = ("secret", ref["key"])
            else:
                assert "valueFrom" not in var, f"{var['name']}: only Secrets or literals"
                env[var["name"]] = var["value"]
        out[container["name"]] = env
    return out


def test_every_variable_is_a_setting_and_the_production_config_is_accepted(
    rendered: list[Doc],
) -> None:
    known = setting_variables()
    config = of_kind(rendered, "ConfigMap")["boxoffice-config"]["data"]
    stand_in = {
        "redis-url": "redis://redis:6379/0",
        "database-url": "postgresql://bo:pw@pgbouncer:6432/boxoffice",
        "database-migrate-url": "postgresql://bo:pw@primary:5432/boxoffice",
        "secret": "Wm9-q8rT_3xLp0aVbN7yKc2JdF5hGs1E",
        "admin-token": "Qz4_uYt7Rk2mXw9PaL0sBd6NfH3jGc8E",
        "smtp-url": "smtps://mailer:pw@smtp:465",
        "stripe-secret-key": "sk_live_x",
        "stripe-webhook-secret": "whsec_x",
    }
    for name, env in environments(rendered).items():
        unknown = set(env) - known
        assert not unknown, f"{name}: not settings: {sorted(unknown)}"
        values = {
            var: (config[v[1]] if v[0] == "config" else stand_in[v[1]])
            if isinstance(v, tuple)
            else v
            for var, v in env.items()
        }
        settings = from_env(values)  # raises on anything production mode refuses
        if name == "migrate":
            assert settings.database_migrate_url and not settings.database_url
        else:
            assert name in ROLES and settings.mode == "production"
            assert settings.database_pooler == "pgbouncer" and not settings.database_migrate_url


def test_secrets_come_from_the_secret_and_match_the_readme(rendered: list[Doc]) -> None:
    keys = set()
    for name, env in environments(rendered).items():
        for var, value in env.items():
            if secret_like(var):
                assert isinstance(value, tuple) and value[0] == "secret", (name, var)
            if isinstance(value, tuple) and value[0] == "secret":
                keys.add(value[1])
    for config in of_kind(rendered, "ConfigMap").values():
        assert not [k for k in config["data"] if secret_like(k)], config["metadata"]["name"]
    assert not of_kind(rendered, "Secret"), "secrets are created by hand, never committed"
    readme = (ROOT / "README.md").read_text()
    command = re.search(rf"create secret generic {SECRET_NAME}(.*?)\n```", readme, re.S)
    assert command is not None, "README shows how to create the Secret"
    assert set(re.findall(r"--from-literal=([a-z-]+)=", command.group(1))) == keys
    # every credential the service reads is covered by the heuristic above
    assert {v for v in PLAIN_VARIABLES if secret_like(v)} >= {"REDIS_URL", "DATABASE_URL"}


def test_hpas_scale_existing_deployments_at_70_percent_cpu(rendered: list[Doc]) -> None:
    deployments = of_kind(rendered, "Deployment")
    by_role = deployments_by_role(rendered)
    scaled = set()
    for hpa in of_kind(rendered, "HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, ref
        target = deployments[ref["name"]]
        assert "replicas" not in target["spec"], f"{ref['name']}: the HPA owns replicas"
        cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert [m["resource"]["name"] for m in cpu] == ["cpu"]
        assert cpu[0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        scaled.add(target["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])
    assert scaled == SCALABLE
    for role in set(ROLES) - SCALABLE:
        assert by_role[role]["spec"]["replicas"] >= 1
    web = of_kind(rendered, "HorizontalPodAutoscaler")["boxoffice-web"]
    (pods,) = [m for m in web["spec"]["metrics"] if m["type"] == "Pods"]
    metric = pods["pods"]["metric"]["name"]
    assert metric == "boxoffice_websocket_connections"
    assert f"\n{metric} ".encode() in Metrics().render()  # the gauge each web pod exports


def test_each_role_has_a_disruption_budget(rendered: list[Doc]) -> None:
    by_role = deployments_by_role(rendered)
    covered = set()
    for pdb in of_kind(rendered, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        hits = [
            r
            for r, d in by_role.items()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(hits) == 1, pdb["metadata"]["name"]
        covered.add(hits[0])
    assert covered == set(ROLES)


def covers(paths: list[Doc], url: str) -> Doc | None:
    """The Ingress path routing `url` (longest match, as ingress-nginx does)."""
    found = [
        p
        for p in paths
        if (p["pathType"] == "Exact" and url == p["path"])
        or (
            p["pathType"] == "Prefix"
            and (url == p["path"] or url.startswith(p["path"].rstrip("/") + "/"))
        )
    ]
    return max(found, key=lambda p: len(p["path"]), default=None)


def test_ingress_routes_the_public_paths_and_nothing_else(rendered: list[Doc]) -> None:
    services = of_kind(rendered, "Service")
    by_role = deployments_by_role(rendered)
    paths = []
    for ingress in of_kind(rendered, "Ingress").values():
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert "nginx.ingress.kubernetes.io/affinity" not in ingress["metadata"]["annotations"]
        for rule in ingress["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                paths.append({**p, "ingress": ingress["metadata"]["name"]})
    role_of_service = {}
    for name, service in services.items():
        (role,) = [
            r
            for r, d in by_role.items()
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        role_of_service[name] = role
    public = set().union(*app_routes("web").values())
    private = {"/healthz", "/readyz", "/metrics"}
    for route in sorted(public - private):
        path = covers(paths, route)
        assert path is not None, f"{route} is not routed"
        role = role_of_service[path["backend"]["service"]["name"]]
        assert route in set().union(*app_routes(role).values()), (route, role)
    for route in private:
        assert covers(paths, route) is None, f"{route} must not be public"
    ws = covers(paths, "/api/queue/{queue_id}/ws")
    assert ws is not None
    annotations = of_kind(rendered, "Ingress")[ws["ingress"]]["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    webhook = covers(paths, "/api/webhooks/stripe")
    assert (
        webhook is not None and role_of_service[webhook["backend"]["service"]["name"]] == "payments"
    )


def test_production_overlay() -> None:
    docs = render(KUSTOMIZATIONS["production"])
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "boxoffice"
    }
    assert {c["image"] for c in containers(docs)} == {"registry.example.com/boxoffice:0.1.0"}
    for ingress in of_kind(docs, "Ingress").values():
        hosts = {r["host"] for r in ingress["spec"]["rules"]}
        assert hosts == {"tickets.example.com"} and ingress["spec"]["tls"][0]["hosts"] == [
            "tickets.example.com"
        ]
    web = of_kind(docs, "HorizontalPodAutoscaler")["boxoffice-web"]["spec"]
    assert (web["minReplicas"], web["maxReplicas"]) == (8, 160)
    assert len(web["metrics"]) == 2  # the patch kept the base's metrics
    config = of_kind(docs, "ConfigMap")["boxoffice-config"]["data"]
    assert config["BOXOFFICE_MODE"] == "production" and config["BOXOFFICE_PUBLIC_URL"].startswith(
        "https://"
    )


def test_the_renderer_merges_as_kustomize_does() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "l": [{"name": "x", "v": 1}, {"name": "y", "v": 2}]}
    patch = {"a": {"c": [3], "d": None}, "l": [{"name": "y", "v": 5}, {"name": "z"}]}
    assert merge(base, patch) == {
        "a": {"b": 1, "c": [3]},
        "l": [{"name": "x", "v": 1}, {"name": "y", "v": 5}, {"name": "z"}],
    }
    doc = {"spec": {"rules": [{"host": "a"}]}}
    assert json_patch(doc, [{"op": "replace", "path": "/spec/rules/0/host", "value": "b"},
                            {"op": "add", "path": "/spec/tls", "value": []}]) == {
        "spec": {"rules": [{"host": "b"}], "tls": []}
    }  # fmt: skip
    with pytest.raises(AssertionError):
        json_patch(doc, [{"op": "replace", "path": "/spec/nothing", "value": 1}])
