"""cluster/aws.yaml against Ray's own autoscaler schema and checks (offline)."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.helpers import REPO as ROOT

AWS = ROOT / "cluster" / "aws.yaml"


@pytest.fixture(scope="module")
def aws() -> dict:
    return yaml.safe_load(AWS.read_text())


def test_aws_config_passes_rays_validation(aws):
    full = prepare_config(copy.deepcopy(aws))  # merges the AWS provider defaults, as `ray up` does
    validate_config(full)
    types = full["available_node_types"]
    assert full["head_node_type"] == "head_cpu" and set(types) == {"head_cpu", "worker_gpu"}
    assert types["worker_gpu"]["min_workers"] == 0 and types["worker_gpu"]["max_workers"] >= 1
    assert types["worker_gpu"]["node_config"]["InstanceType"].startswith(("g", "p"))  # a GPU instance


def test_validation_would_catch_a_broken_config(aws):
    """The check above can fail: Ray's schema rejects unknown keys and bad types."""
    bad = prepare_config(copy.deepcopy(aws))
    bad["available_node_types"]["worker_gpu"]["min_wrokers"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(bad)
    bad = prepare_config(copy.deepcopy(aws))
    bad["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(bad)


def test_nodes_reach_s3_by_instance_profile_and_hold_no_secret(aws):
    for node in aws["available_node_types"].values():
        assert node["node_config"]["IamInstanceProfile"]["Name"]
    text = AWS.read_text()
    assert not re.search(r"(?i)(aws_secret_access_key|aws_access_key_id|AKIA[0-9A-Z]{16}|password|token:)", text)
    assert "ssh_private_key" not in aws.get("auth", {})


def test_setup_installs_the_readme_pins_and_dashboard_stays_on_loopback(aws):
    readme = (ROOT / "README.md").read_text()
    pins = re.search(r"pip install (torch==\S+ torchvision==\S+)", readme).group(1)
    assert any(pins in cmd for cmd in aws["setup_commands"])
    assert any("--dashboard-host=127.0.0.1" in cmd for cmd in aws["head_start_ray_commands"])


# --- cluster/kuberay.yaml --------------------------------------------------------------
# Not validated against KubeRay's RayCluster CRD schema: Ray does not ship it and the tests
# fetch nothing. What is checked offline: the documents parse, the fields KubeRay needs are
# there, every `rayStartParams` key is a real `ray start` option (from Ray's own CLI) with a
# string value (the CRD types them map[string]string), rayVersion and the image's Ray match
# the installed Ray, resources are consistent, and nothing secret is in the file.

KUBERAY = ROOT / "cluster" / "kuberay.yaml"
DOCKERFILE = ROOT / "cluster" / "Dockerfile"


def _kuberay_docs(text: str) -> dict:
    return {d["kind"]: d for d in yaml.safe_load_all(text) if d}


def _containers(cluster: dict) -> dict[str, dict]:
    groups = {"head": cluster["spec"]["headGroupSpec"]}
    groups.update({g["groupName"]: g for g in cluster["spec"].get("workerGroupSpecs", [])})
    return {name: g["template"]["spec"]["containers"][0] for name, g in groups.items()}


def kuberay_problems(docs: dict) -> list[str]:
    import ray
    from ray.scripts.scripts import start

    problems = []
    cluster, sa = docs.get("RayCluster"), docs.get("ServiceAccount")
    if cluster is None or sa is None:
        return [f"expected a RayCluster and a ServiceAccount, got {sorted(docs)}"]
    if cluster.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion {cluster.get('apiVersion')!r}")
    spec = cluster["spec"]
    if spec.get("rayVersion") != ray.__version__:
        problems.append(f"rayVersion {spec.get('rayVersion')!r} != installed Ray {ray.__version__}")
    options = {o for p in start.params for o in p.opts}
    groups = [("head", spec.get("headGroupSpec") or {})] + [(g.get("groupName"), g) for g in spec.get("workerGroupSpecs", [])]
    for name, g in groups:
        if not name:
            problems.append("a worker group without groupName")
        params = g.get("rayStartParams")
        if not isinstance(params, dict):
            problems.append(f"{name}: rayStartParams missing")
            params = {}
        for k, v in params.items():
            if f"--{k}" not in options:
                problems.append(f"{name}: rayStartParams {k!r} is not a `ray start` option")
            if not isinstance(v, str):
                problems.append(f"{name}: rayStartParams {k}={v!r} is not a string")
        pod = (g.get("template") or {}).get("spec") or {}
        if pod.get("serviceAccountName") != sa["metadata"]["name"]:
            problems.append(f"{name}: serviceAccountName {pod.get('serviceAccountName')!r}")
        c = (pod.get("containers") or [{}])[0]
        if not (c.get("name") and c.get("image")):
            problems.append(f"{name}: container needs a name and an image")
        if c.get("env") or c.get("envFrom"):
            problems.append(f"{name}: credentials come from IRSA, not container env")
        res = c.get("resources") or {}
        if res.get("requests") != res.get("limits") or "cpu" not in res.get("limits", {}):
            problems.append(f"{name}: cpu/memory/GPU requests must equal limits (KubeRay derives num-cpus/num-gpus)")
        if name != "head" and not g.get("minReplicas", 0) <= g.get("replicas", 0) <= g.get("maxReplicas", 0):
            problems.append(f"{name}: needs minReplicas <= replicas <= maxReplicas")
    return problems


@pytest.fixture(scope="module")
def kuberay() -> dict:
    return _kuberay_docs(KUBERAY.read_text())


def test_kuberay_manifest_is_consistent(kuberay):
    assert kuberay_problems(kuberay) == []
    cluster = kuberay["RayCluster"]
    containers = _containers(cluster)
    assert set(containers) == {"head", "gpu"}
    head, gpu = containers["head"]["resources"]["limits"], containers["gpu"]["resources"]["limits"]
    assert "nvidia.com/gpu" not in head and int(gpu["nvidia.com/gpu"]) >= 1
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    gpu_group = cluster["spec"]["workerGroupSpecs"][0]
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu_group["template"]["spec"]["tolerations"])
    # What `ablate launch --gpus-per-worker 1` plans on this cluster fits one Train worker per GPU pod.
    from ablate.runtime import plan_placement

    nodes = [float(head["cpu"])] + [float(gpu["cpu"])] * gpu_group["maxReplicas"]
    p = plan_placement(sum(nodes), 1, None, 1.0, None, node_cpus=nodes)
    assert p.cpus_per_worker + p.driver_cpus <= float(gpu["cpu"]) and p.concurrent == gpu_group["maxReplicas"]


@pytest.mark.bad_input
def test_kuberay_checks_would_catch_a_broken_manifest(kuberay):
    bad = copy.deepcopy(kuberay)
    bad["RayCluster"]["spec"]["rayVersion"] = "2.9.0"
    bad["RayCluster"]["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # an int
    bad["RayCluster"]["spec"]["workerGroupSpecs"][0]["rayStartParams"]["dashbord-host"] = "0.0.0.0"
    bad["RayCluster"]["spec"]["workerGroupSpecs"][0]["template"]["spec"]["serviceAccountName"] = "default"
    problems = "\n".join(kuberay_problems(bad))
    for expected in ("rayVersion '2.9.0'", "num-cpus=0 is not a string", "'dashbord-host' is not a `ray start` option",
                     "gpu: serviceAccountName 'default'"):
        assert expected in problems


def test_kuberay_reaches_s3_by_irsa_and_holds_no_secret(kuberay):
    arn = kuberay["ServiceAccount"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\w+:role/[\w+=,.@-]+", arn)
    text = KUBERAY.read_text()
    assert "kind: Secret" not in text and "secretKeyRef" not in text
    assert not re.search(r"(?i)(aws_secret_access_key|aws_access_key_id|AKIA[0-9A-Z]{16}|password|token:)", text)


def test_kuberay_image_installs_the_project_on_the_same_ray(kuberay):
    import ray

    docker = DOCKERFILE.read_text()
    base = re.search(r"^FROM (\S+)", docker, re.MULTILINE).group(1)
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py311")  # the README's Python 3.11
    readme = (ROOT / "README.md").read_text()
    pins = re.search(r"pip install (torch==\S+ torchvision==\S+)", readme).group(1)
    assert re.search(rf"pip install .*{re.escape(pins)} -e \"?\.(\[s3\])?\"?", docker)
    images = {c["image"] for c in _containers(kuberay["RayCluster"]).values()}
    assert len(images) == 1  # head and workers run the same build
    ignore = (ROOT / "cluster" / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "runs"} <= set(ignore)
