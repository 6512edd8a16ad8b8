"""`ablate schema`: the JSON Schema of a search-space file, for editors. It names every
top-level key the loader reads, every shipped search space validates against it, and a
key the loader refuses is refused by it too."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.config import SearchSpaceFile, load_grid, shipped_grids


@pytest.fixture(scope="module")
def schema() -> dict:
    r = CliRunner().invoke(app, ["schema"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)  # the whole output is one JSON document


def test_schema_names_the_top_level_keys(schema):
    assert set(schema["properties"]) == {"name", "description", "base", "combinations", "seeds", "questions"}
    assert schema["required"] == ["combinations"] and schema["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(schema)  # a well-formed draft 2020-12 schema
    train = schema["$defs"]["TrainSpec"]["properties"]
    assert train["steps"]["type"] == "integer" and train["precision"]["enum"] == ["auto", "bf16", "fp16", "fp32"]


def test_shipped_search_spaces_validate(schema):
    grids = shipped_grids()
    assert {"smoke", "losses", "edges", "pixel"} <= set(grids)
    validator = jsonschema.Draft202012Validator(schema)
    for name, path in grids.items():
        raw = yaml.safe_load(path.read_text())
        validator.validate(raw)
        SearchSpaceFile.model_validate(raw)  # the pydantic model the schema is made from
        assert load_grid(path).trials, name  # and the loader agrees


@pytest.mark.bad_input
@pytest.mark.parametrize("patch", [
    {"train": {"stepz": 5}},  # an unknown key of a spec
    {"train": {"steps": "5"}},  # a string where an integer is asked for
    {"train": {"precision": "half"}},
    {"data": {"augment": {"hflip": 1}}},
    {"colour": 1},  # an unknown block of a combination
])
def test_what_the_loader_refuses_the_schema_refuses(schema, tmp_path, patch):
    raw = yaml.safe_load(shipped_grids()["smoke"].read_text())
    raw["combinations"]["l1"].update(patch)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(raw)
    p = tmp_path / "g.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"g\.yaml: combinations\.l1"):
        load_grid(p)
