"""cluster/aws.yaml against Ray's own autoscaler schema and checks (offline)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
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
