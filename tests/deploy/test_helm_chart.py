"""The Helm chart (deploy/helm/polyroute), rendered by a real helm and checked without a cluster.

Each values set in the chart's ci/ folder is linted and rendered; every object is validated
against Kubernetes' OpenAPI schemas (kubernetes-validate, strict: an unknown field fails), the
LeaderWorkerSet against a schema written from its published CRD, and the things that matter
are asserted: probe paths, a ConfigMap that polyroute's own ``load_config`` accepts, Services
that select pods, the Jobs' Kueue labels and suspension. helm comes from scripts/get-helm.sh.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource
from tests.deploy.conftest import CHART, Obj, render

from polyroute.config import load_config

VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
K8S_VERSION = "1.35"  # the Kubernetes API version the chart is validated against
LWS_SCHEMA = json.loads((Path(__file__).parent / "leaderworkerset-v1.schema.json").read_text())


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[Obj]]:
    return {v.name.removesuffix("-values.yaml"): render(helm, v) for v in VALUES}


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in of_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def _lws_validator() -> jsonschema.protocols.Validator:
    folder = f"kubernetes-json-schema/v{K8S_VERSION}.0-local-strict"
    defs = Resource.from_contents(schema_contents(f"{folder}/_definitions.json", K8S_VERSION))
    registry: Registry[Any] = Registry().with_resource(
        "https://kubernetes.io/api/_definitions.json", defs
    )
    return jsonschema.Draft202012Validator(LWS_SCHEMA, registry=registry)


def validate(obj: Obj) -> None:
    if obj["apiVersion"] == "leaderworkerset.x-k8s.io/v1":
        _lws_validator().validate(obj)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_values_sets_are_there() -> None:
    assert {v.name for v in VALUES} >= {
        "default-values.yaml",
        "postgres-values.yaml",
        "jobs-kueue-values.yaml",
        "engines-lws-values.yaml",
    }


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_helm_lint_is_clean(helm: str, values: Path) -> None:
    out = subprocess.run(
        [helm, "lint", str(CHART), "--strict", "-f", str(values)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_rendered_object_validates(rendered: dict[str, list[Obj]]) -> None:
    kinds: set[str] = set()
    for name, objs in rendered.items():
        for obj in objs:
            try:
                validate(obj)
            except Exception as e:  # name the values set and object in the failure
                pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {e}")
            kinds.add(obj["kind"])
    assert kinds >= {
        "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
        "StatefulSet", "Job", "PersistentVolumeClaim", "LeaderWorkerSet", "PodDisruptionBudget",
    }  # fmt: skip


def test_the_validators_catch_mistakes(rendered: dict[str, list[Obj]]) -> None:
    deployment = one(render_cached(rendered, "default"), "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    lws = one(render_cached(rendered, "engines-lws"), "LeaderWorkerSet")
    del lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    with pytest.raises(jsonschema.ValidationError, match="workerTemplate"):
        validate(lws)
    lws = one(render_cached(rendered, "engines-lws"), "LeaderWorkerSet")
    lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["portz"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate(lws)


def render_cached(rendered: dict[str, list[Obj]], name: str) -> list[Obj]:
    """A fresh copy of a rendered set (tests above mutate theirs)."""
    return json.loads(json.dumps(rendered[name]))


def gateway(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment", "rel-polyroute")


def test_probes_point_at_liveness_and_readiness(rendered: dict[str, list[Obj]]) -> None:
    for name, objs in rendered.items():
        c = gateway(objs)["spec"]["template"]["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/health/live", name
        assert c["startupProbe"]["httpGet"]["path"] == "/health/live", name
        ready = c["readinessProbe"]
        if "httpGet" in ready:  # auth off: /health answers without a key
            assert ready["httpGet"] == {"path": "/health", "port": "http"}, name
        else:  # auth on: the probe asks /health with the admin key from the environment
            script = ready["exec"]["command"][-1]
            assert "http://127.0.0.1:8000/health" in script, name
            assert 'os.environ["POLYROUTE_ADMIN_KEY"]' in script, name
            compile(script, "readiness", "exec")


def test_the_configmap_is_a_polyroute_config(
    rendered: dict[str, list[Obj]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    configs = {}
    for name, objs in rendered.items():
        text = one(objs, "ConfigMap")["data"]["polyroute.yaml"]
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        configs[name] = load_config(path)
    default = configs["default"]
    assert (default.server.host, default.server.port) == ("0.0.0.0", 8000)
    assert default.store.database_url == "sqlite:////data/polyroute.db"
    assert str(default.store.journal_dir) == "/data/journal"
    pg = configs["postgres"]
    # The password is not in the ConfigMap: libpq reads PGPASSWORD from the Secret.
    assert (
        pg.store.database_url
        == "postgresql+psycopg://polyroute@rel-polyroute-postgres:5432/polyroute"
    )
    assert pg.auth != "none" and pg.auth.rate_limits == "database"
    assert [m.name for m in pg.models] == ["gpt-4o-mini"]
    assert pg.telemetry.otlp_endpoint == "http://otel-collector.observability:4318"
    assert configs["jobs-kueue"].auth == "none"
    lws = configs["engines-lws"]
    assert [m.name for m in lws.models] == ["qwen-small", "llama-70b", "llama-405b"]
    assert (
        lws.providers["engine-llama-405b"].base_url
        == "http://rel-polyroute-engine-llama-405b:8000/v1"
    )
    assert (
        lws.providers["engine-qwen-small"].base_url
        == "http://rel-polyroute-engine-qwen-small:8080/v1"
    )
    big = next(m for m in lws.models if m.name == "llama-70b")
    assert big.upstream_model == "meta-llama/Llama-3.3-70B-Instruct"
    assert big.aliases == ["llama-70b-instruct"] and big.timeout_s == 300
    assert set(lws.routers) == {"cheap-first"}


def test_services_select_pods_that_exist(rendered: dict[str, list[Obj]]) -> None:
    for name, objs in rendered.items():
        pods: list[tuple[dict[str, str], set[str]]] = []
        for o in objs:
            spec = o.get("spec", {})
            if o["kind"] in ("Deployment", "StatefulSet"):
                templates = [spec["template"]]
            elif o["kind"] == "LeaderWorkerSet":
                lwt = spec["leaderWorkerTemplate"]
                # The LWS controller adds worker-index 0 to leaders (1.. to workers).
                leader = json.loads(json.dumps(lwt["leaderTemplate"]))
                leader["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"] = "0"
                templates = [leader, lwt["workerTemplate"]]
            else:
                continue
            for t in templates:
                ports = {p["name"] for c in t["spec"]["containers"] for p in c.get("ports", [])}
                pods.append((t["metadata"]["labels"], ports))
        for svc in of_kind(objs, "Service"):
            selector = svc["spec"]["selector"]
            matching = [ports for labels, ports in pods if selector.items() <= labels.items()]
            assert len(matching) == 1, (
                f"{name}: Service {svc['metadata']['name']} selects {len(matching)} templates"
            )
            for p in svc["spec"]["ports"]:
                assert p["targetPort"] in matching[0], f"{name}: {svc['metadata']['name']}"


def test_keys_come_from_the_secret(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["postgres"]
    secret = one(objs, "Secret", "rel-polyroute-keys")
    assert secret["stringData"]["OPENAI_API_KEY"] == "sk-test-not-a-key"
    assert len(secret["stringData"]["POLYROUTE_ADMIN_KEY"]) == 40  # generated
    c = gateway(objs)["spec"]["template"]["spec"]["containers"][0]
    assert c["envFrom"] == [{"secretRef": {"name": "rel-polyroute-keys"}}]
    env = {e["name"]: e for e in c["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "rel-polyroute-postgres",
        "key": "password",
    }
    assert env["POLYROUTE_REDIS_URL"]["value"] == "redis://rel-polyroute-redis:6379/0"
    # Someone else's Secret: the chart makes none and points the pods at it.
    lws = rendered["engines-lws"]
    assert not [s for s in of_kind(lws, "Secret") if s["metadata"]["name"] == "rel-polyroute-keys"]
    c = gateway(lws)["spec"]["template"]["spec"]["containers"][0]
    assert c["envFrom"] == [{"secretRef": {"name": "polyroute-keys"}}]


def test_hpa_scales_the_gateway(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["postgres"]
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "rel-polyroute",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert "replicas" not in gateway(objs)["spec"]  # the HPA owns it
    assert not of_kind(rendered["default"], "HorizontalPodAutoscaler")
    assert gateway(rendered["default"])["spec"]["replicas"] == 1


def jobs(objs: list[Obj]) -> dict[str, Obj]:
    return {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in of_kind(objs, "Job")}


def test_bench_and_train_jobs_are_queued_for_kueue(rendered: dict[str, list[Obj]]) -> None:
    found = jobs(rendered["jobs-kueue"])
    assert set(found) == {"bench", "train"}
    claim = one(rendered["jobs-kueue"], "PersistentVolumeClaim")["metadata"]["name"]
    for kind, job in found.items():
        assert job["metadata"]["name"] == f"rel-polyroute-{kind}-2026-12-02"
        labels = job["metadata"]["labels"]
        assert labels["kueue.x-k8s.io/queue-name"] == "research"
        assert labels["kueue.x-k8s.io/priority-class"] == "batch-low"
        assert job["spec"]["suspend"] is True  # Kueue unsuspends it once admitted
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        c = pod["containers"][0]
        assert c["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}  # what Kueue counts
        assert {"name": "results", "mountPath": "/results"} in c["volumeMounts"]
        assert {"name": "results", "persistentVolumeClaim": {"claimName": claim}} in pod["volumes"]
    bench = found["bench"]["spec"]["template"]["spec"]["containers"][0]
    assert bench["command"] == ["polyroute"]
    args = bench["args"]
    assert args[0] == "bench"
    # The results (and the answer log beside them) are on the volume: a rerun resumes there.
    assert args[args.index("--out") + 1] == "/results/bench/results.jsonl"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--suite"] == [
        "bigbench:object_counting",
        "llmrouter:test",
    ]
    assert args[args.index("--models") + 1] == "llama-8b"
    assert args[args.index("--limit") + 1] == "200"
    train = found["train"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert train[:5] == [
        "train",
        "--data",
        "/results/bench/results.jsonl",
        "--out",
        "/results/routers/learned",
    ]
    assert train[train.index("--router") + 1] == "knn"


def test_jobs_cli_arguments_are_real_options() -> None:
    """The flags the chart passes exist on the CLI (a renamed flag would fail every Job)."""
    from typer.main import get_command

    from polyroute.cli.main import app

    cli = get_command(app)
    for sub, flags in {
        "bench": {
            "--config",
            "--out",
            "--data-dir",
            "--concurrency",
            "--suite",
            "--models",
            "--limit",
        },
        "train": {"--data", "--out", "--cache-dir", "--router"},
        "serve": {"--config", "--host", "--port"},
    }.items():
        command = cli.commands[sub]  # type: ignore[attr-defined]
        options = {o for p in command.params for o in p.opts}
        assert flags <= options, (sub, flags - options)


def test_without_kueue_jobs_start_at_once(helm: str) -> None:
    objs = render(helm, CHART / "ci" / "jobs-kueue-values.yaml", sets=("jobs.kueue.enabled=false",))
    for job in jobs(objs).values():
        assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
        assert "suspend" not in job["spec"]
    assert not jobs(render(helm))  # and no Jobs unless asked for


def test_engines_deployment_and_leaderworkerset(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["engines-lws"]
    small = one(objs, "Deployment", "rel-polyroute-engine-qwen-small")
    c = small["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/ggml-org/llama.cpp:server"
    assert c["command"][:3] == [
        "/app/llama-server",
        "-m",
        "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf",
    ]
    assert c["command"][-2:] == ["--ctx-size", "8192"]
    volumes = small["spec"]["template"]["spec"]["volumes"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "gguf-models"}} in volumes
    big = one(objs, "Deployment", "rel-polyroute-engine-llama-70b")
    assert big["spec"]["replicas"] == 2
    c = big["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:3] == ["vllm", "serve", "meta-llama/Llama-3.3-70B-Instruct"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    lws = one(objs, "LeaderWorkerSet")
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2 and lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = lwt["leaderTemplate"]["spec"]["containers"][0]
    worker = lwt["workerTemplate"]["spec"]["containers"][0]
    assert "--tensor-parallel-size' '8' '--pipeline-parallel-size' '2'" in leader["command"][-1]
    assert "ray start --head" in leader["command"][-1]
    assert "$LWS_LEADER_ADDRESS" in worker["command"][-1]
    assert "ports" not in worker  # only leaders serve
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == 8
    svc = one(objs, "Service", "rel-polyroute-engine-llama-405b")
    assert svc["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("engines[0].name=x",), "missing properties 'kind', 'model'"),
        (("jobs.kueue.enable=true",), "additional properties 'enable' not allowed"),
        (("engines[0].name=x", "engines[0].kind=tgi", "engines[0].model=m"), "kind"),
        # Replicas with SQLite would each keep their own keys and budgets.
        (("gateway.replicas=3",), "need a shared database"),
        (("autoscaling.enabled=true",), "need a shared database"),
    ],
)
def test_the_values_schema_refuses_mistakes(helm: str, sets: tuple[str, ...], message: str) -> None:
    args = [helm, "template", "rel", str(CHART)]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert message in out.stderr


def iter_containers(objs: list[Obj]) -> Iterator[Obj]:
    for o in objs:
        spec = o.get("spec", {})
        for t in (spec.get("template"), spec.get("jobTemplate")):
            if t:
                yield from t["spec"]["containers"]


def test_the_gateway_runs_unprivileged_with_its_files_on_volumes(
    rendered: dict[str, list[Obj]],
) -> None:
    pod = gateway(rendered["default"])["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/etc/polyroute", "/data", "/tmp"}
    assert c["args"][:2] == ["--config", "/etc/polyroute/polyroute.yaml"]
    assert sum(1 for _ in iter_containers(rendered["default"])) == 1
