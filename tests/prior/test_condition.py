"""A prior conditioned on a dataset label (`prior: {condition: COLUMN}`, issue 28): the launch
refuses a column the dataset lacks or leaves empty, the column reaches the codes as classes,
a prior trained through the loop's helpers draws grids that follow their class, and each
sample's label is drawn in the train split's frequencies from its chunk's seed alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ablate.data.labels import Condition
from ablate.data.sample_store import chunk_seed, read_samples
from ablate.data.shards import prepare
from ablate.models.code_prior import CodePrior, CodePriorConfig
from ablate.models.presets import build_model
from ablate.prior.draw import CHUNK, DrawRequest, draw_samples
from ablate.prior.loop import batches, grids_of
from ablate.prior.prior_file import load_prior, save_prior
from tests.helpers.grids import write_grid_file
from tests.helpers.images import synthetic_fundus_folder

SIDE = 16  # px: the tiny preset halves once, 8x8 = 64 codes of a 64-code book
SPEC_16PX = SimpleNamespace(model=SimpleNamespace(preset="tiny", overrides={}, edge_channel=None),
                            data=SimpleNamespace(size=SIDE))
GRID = """
base:
  data: {size: 32}
  model: {preset: tiny}
  train: {steps: 2, batch_size: 2}
  losses: {l1: {weight: 1.0}}
  prior: {layers: 1, heads: 2, width: 16, steps: 2, batch_size: 2}
combinations:
  plain: {}
  graded: {prior: {condition: COLUMN}}
seeds: [0]
"""


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A dataset prepared from an index with a `grade` column (one train image unlabelled)
    and a `site` column (every image labelled): 6 train, 2 val, 2 test."""
    root = tmp_path_factory.mktemp("labelled")
    synthetic_fundus_folder(root / "src", n=10)
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    grades = ["b", "a", "b", "", "b", "a", "a", "b", "a", "b"]
    sites = ["x", "y", "x", "x", "x", "x", "y", "x", "x", "y"]
    idx = root / "src" / "files.csv"
    idx.write_text("path,split,grade,site\n" + "".join(
        f"img{i:03d}.png,{sp},{g},{s}\n" for i, (sp, g, s) in enumerate(zip(splits, grades, sites))))
    prepare(None, root / "data", size=32, index=idx)
    return root / "data"


# ---- the launch's check -------------------------------------------------------------------------

@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
@pytest.mark.parametrize("column, says", [
    ("stage", ("combinations.graded.prior.condition: 'stage' is not a label column of the dataset {data} (its "
              "label columns: grade, site); name one of its columns, or prepare the dataset with `ablate prepare "
              "--index FILE` from an index file whose 'stage' column holds each image's label")),
    ("grade", ("combinations.graded.prior.condition: 1 of the 6 train images of {data} have no 'grade' label; a "
              "conditional prior learns each train grid from its image's label (and measures its val loss the "
              "same way): fill them in the index file and prepare again, or drop prior.condition")),
])
def test_the_launch_refuses_a_condition_the_dataset_cannot_give(labelled, tmp_path, column, says):
    from ablate.config import ConfigError
    from ablate.pipeline import LaunchOptions, prepare_launch

    grid = write_grid_file(tmp_path, GRID.replace("COLUMN", column))
    with pytest.raises(ConfigError) as e:
        prepare_launch(LaunchOptions(grid=str(grid), data=str(labelled), dry_run=True))
    assert str(e.value) == f"{grid}: " + says.format(data=labelled)


@pytest.mark.bad_input
@pytest.mark.usefixtures("no_ray_start")
def test_a_dataset_without_labels_is_said_to_have_none(drive32, tmp_path):
    from ablate.config import ConfigError
    from ablate.pipeline import LaunchOptions, prepare_launch

    grid = write_grid_file(tmp_path, GRID.replace("COLUMN", "grade"))
    with pytest.raises(ConfigError, match=r"'grade' is not a label column of the dataset .* \(it has no label "
                                          r"columns\); name one"):
        prepare_launch(LaunchOptions(grid=str(grid), data=str(drive32), dry_run=True))


@pytest.mark.usefixtures("no_ray_start")
def test_a_labelled_column_passes_the_launch_check(labelled, tmp_path, capsys):
    from ablate.pipeline import LaunchOptions, prepare_launch

    grid = write_grid_file(tmp_path, GRID.replace("COLUMN", "site"))
    assert prepare_launch(LaunchOptions(grid=str(grid), data=str(labelled), dry_run=True)) is None
    assert "graded-s0" in capsys.readouterr().out


# ---- the labels to the codes ---------------------------------------------------------------------

def test_the_condition_of_a_dataset_numbers_its_values_in_manifest_order(labelled):
    c = Condition.of_dataset(str(labelled), "site")
    assert (c.values, c.train_counts) == (("x", "y"), (5, 1))
    assert Condition.from_record(c.record()) == c
    assert list(c.classes(["y", "x", "y"])) == [1, 0, 1]
    with pytest.raises(ValueError, match=r"site: None is not one of its values \['x', 'y'\]"):
        c.classes(["x", None])
    with pytest.raises(ValueError, match=r"1 train images have no 'grade' label"):
        Condition.of_dataset(str(labelled), "grade")


def test_decoded_rows_carry_their_class_and_the_codes_keep_it(labelled, tmp_path):
    """The Ray Data callables of the codes (stream.Decode, codes.EncodeCodes), called on one
    batch of the train shard as map_batches calls them."""
    import pyarrow.parquet as pq

    from ablate.data.shards import shard_paths
    from ablate.data.stream import Decode
    from ablate.models.checkpoint import write_checkpoint
    from ablate.prior.codes import EncodeCodes
    from tests.helpers.checkpoints import TINY_32PX_SPEC

    c = Condition.of_dataset(str(labelled), "site")
    table = pq.read_table(shard_paths(labelled, "train")[0], columns=["id", "image", "site"]).to_pydict()
    batch = {k: np.array(v, dtype=object) for k, v in table.items()}
    decoded = Decode(32, c)(batch)
    assert list(decoded["label"]) == [c.values.index(s) for s in table["site"]]
    assert "label" not in Decode(32)({k: batch[k] for k in ("id", "image")})
    write_checkpoint(tmp_path, model_state=build_model("tiny", 32, {}).state_dict(), optimizer_state={}, step=1,
                     spec=TINY_32PX_SPEC)
    coded = EncodeCodes(str(tmp_path))(decoded)
    assert coded["codes"].shape == (6, 16 * 16) and list(coded["label"]) == list(decoded["label"])


def test_codes_are_reused_only_for_the_same_condition(tmp_path):
    """A resumed trial keeps its codes; codes of another condition (or none) are encoded again."""
    import json

    from ablate.prior.codes import encoded

    grade = Condition("grade", ("a", "b"), (3, 1))
    (tmp_path / "train.json").write_text(json.dumps({"checkpoint": "ck", "rows": 4, "grid": [8, 8], "vocab": 64,
                                                     "condition": {"column": "grade", "values": ["a", "b"]}}))
    assert encoded(str(tmp_path), "train", "ck", grade).rows == 4
    assert encoded(str(tmp_path), "train", "ck", Condition("grade", ("a", "b", "c"), (1, 1, 1))) is None
    assert encoded(str(tmp_path), "train", "ck", None) is None
    assert encoded(str(tmp_path), "train", "other", grade) is None
    (tmp_path / "val.json").write_text(json.dumps({"checkpoint": "ck", "rows": 2, "grid": [8, 8], "vocab": 64}))
    assert encoded(str(tmp_path), "val", "ck", None).rows == 2 and encoded(str(tmp_path), "val", "ck", grade) is None


# ---- a conditional prior trained on grids its class decides ----------------------------------------

class _Shard:
    """What a Train worker's dataset shard gives grids_of: numpy batches of the code rows."""

    def __init__(self, codes: np.ndarray, labels: np.ndarray):
        self.codes, self.labels = codes, labels

    def iter_batches(self, batch_size: int, batch_format: str):
        for k in range(0, len(self.codes), batch_size):
            yield {"codes": self.codes[k:k + batch_size].astype(np.int32), "key": np.arange(k, k + batch_size),
                   "label": self.labels[k:k + batch_size]}


@pytest.fixture(scope="module")
def follows_class(tmp_path_factory):
    """A tiny autoencoder (16 px, 8x8 codes) and a prior trained with the loop's helpers on
    grids of code 0 (class 0, 'A') and code 1 (class 1, 'B'), saved with its condition."""
    from ablate.models.checkpoint import write_checkpoint

    root = tmp_path_factory.mktemp("follows")
    torch.manual_seed(0)
    ae = build_model("tiny", SIDE, {})
    (root / "ae").mkdir()
    write_checkpoint(root / "ae", model_state=ae.state_dict(), optimizer_state={}, step=1, spec=SPEC_16PX)
    labels = np.array([0, 1, 0, 0, 1, 0, 1, 0], dtype=np.int64)
    codes = np.repeat(labels[:, None], 64, axis=1)  # class k: every code is k
    grids, classes = grids_of(_Shard(codes, labels), labelled=True)
    assert np.array_equal(grids, codes) and np.array_equal(classes, labels)
    prior = CodePrior(CodePriorConfig(vocab=64, n_positions=64, n_conditions=2, layers=1, heads=2, width=32,
                                      pkeep=1.0))
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    for epoch in range(40):
        for batch_codes, batch_labels in batches(grids, classes, 4, seed=0, rank=0, epoch=epoch, device="cpu"):
            loss = torch.nn.functional.cross_entropy(prior(batch_codes, batch_labels).reshape(-1, 64),
                                                     batch_codes.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    condition = Condition("grade", ("A", "B"), (5, 3)).record()
    (root / "prior").mkdir()
    save_prior(root / "prior", prior, (8, 8), step=80, loss=loss.item(), val_loss=float("nan"), seed=11,
               condition=condition)
    return root, ae


def test_a_conditional_prior_draws_the_grid_of_each_samples_class(follows_class, tmp_path):
    from ablate.models.checkpoint import read_checkpoint, rebuild_model

    root, _ = follows_class
    ae, _ = rebuild_model(read_checkpoint(str(root / "ae")))  # as drawing decodes
    prior, saved = load_prior(str(root / "prior"))
    assert prior.config.n_conditions == 2 and saved["condition"]["values"] == ["A", "B"]
    # greedy (top_k 1): each class's grid exactly, where sampling would stray in one code of ~1000
    draw_samples(DrawRequest(folder=str(tmp_path), prior=str(root / "prior"), autoencoder=str(root / "ae"),
                             total=CHUNK, top_k=1))
    s = read_samples(tmp_path)
    with torch.no_grad():
        made = {name: (ae.decode_codes(torch.full((1, 8, 8), k)).clamp(0, 1).permute(0, 2, 3, 1).numpy()[0] * 255)
                .round().astype(np.uint8) for k, name in enumerate(("A", "B"))}
    assert not np.array_equal(made["A"], made["B"])
    labels = list(s.table["condition"])
    assert set(labels) == {"A", "B"}  # both classes drawn
    for image, label in zip(s.images, labels):
        assert np.array_equal(image, made[label]), f"a sample labelled {label} is not its class's grid"


def test_labels_are_drawn_in_the_train_frequencies_from_the_chunk_seed(follows_class, tmp_path):
    """Chunk k's labels are Condition.draw(n, chunk_seed(seed, k)): the same however the draw
    is split, and over many draws in the train split's proportions."""
    root, _ = follows_class
    c = Condition("grade", ("A", "B"), (5, 3))
    draw_samples(DrawRequest(folder=str(tmp_path / "once"), prior=str(root / "prior"),
                             autoencoder=str(root / "ae"), total=CHUNK + 3))
    for total in (CHUNK, CHUNK + 3):  # the trial's draw, then `ablate sample` tops it up
        draw_samples(DrawRequest(folder=str(tmp_path / "two"), prior=str(root / "prior"),
                                 autoencoder=str(root / "ae"), total=total))
    once, two = read_samples(tmp_path / "once"), read_samples(tmp_path / "two")
    expected = [c.values[k] for k in c.draw(CHUNK, chunk_seed(11, 0))] + \
        [c.values[k] for k in c.draw(3, chunk_seed(11, 1))]
    assert list(once.table["condition"]) == expected and list(two.table["condition"]) == expected
    assert np.array_equal(once.images, two.images)
    many = np.concatenate([c.draw(CHUNK, chunk_seed(11, k)) for k in range(200)])
    assert abs((many == 0).mean() - 5 / 8) < 0.02  # 6400 draws: the standard error is 0.006


def test_an_unconditional_prior_writes_its_chunks_as_before(tmp_path):
    """No condition in its file, a null `condition` column of Int64 in its chunks."""
    import pyarrow.parquet as pq

    from ablate.models.checkpoint import write_checkpoint

    torch.manual_seed(0)
    ae = build_model("tiny", SIDE, {})
    (tmp_path / "ae").mkdir()
    write_checkpoint(tmp_path / "ae", model_state=ae.state_dict(), optimizer_state={}, step=1, spec=SPEC_16PX)
    (tmp_path / "prior").mkdir()
    save_prior(tmp_path / "prior", CodePrior(CodePriorConfig(vocab=64, n_positions=64, layers=1, heads=2, width=16)),
               (8, 8), step=1, loss=1.0, val_loss=1.0, seed=3)
    assert "condition" not in torch.load(tmp_path / "prior" / "prior.pt", weights_only=True)
    draw_samples(DrawRequest(folder=str(tmp_path / "s"), prior=str(tmp_path / "prior"),
                             autoencoder=str(tmp_path / "ae"), total=2))
    table = pq.read_table(tmp_path / "s" / "chunk-00000.parquet")
    assert str(table.schema.field("condition").type) == "int64" and table["condition"].null_count == 2


def test_a_prior_is_saved_with_the_condition_its_tokens_need():
    prior = CodePrior(CodePriorConfig(vocab=8, n_positions=4, n_conditions=2, layers=1, heads=2, width=16))
    with pytest.raises(ValueError, match="a prior with 2 condition tokens saved with condition None"):
        save_prior(".", prior, (2, 2), step=0, loss=0.0, val_loss=0.0, seed=0)


@pytest.mark.ray
def test_encode_split_through_ray_data_keeps_each_grids_label(ray_local, labelled, tmp_path):
    """The real Ray Data pipeline of the codes (split_dataset -> EncodeCodes -> write_parquet):
    each written grid keeps its image's class, as the shards' label column says."""
    import pyarrow.parquet as pq

    from ablate.data.shards import shard_paths
    from ablate.models.checkpoint import write_checkpoint
    from ablate.prior.codes import encode_split
    from ablate.prior.loop import grids_of
    from tests.helpers.checkpoints import TINY_32PX_SPEC

    c = Condition.of_dataset(str(labelled), "site")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_checkpoint(ckpt, model_state=build_model("tiny", 32, {}).state_dict(), optimizer_state={}, step=1,
                     spec=TINY_32PX_SPEC)
    split = encode_split(str(labelled), "train", 32, str(ckpt), str(tmp_path / "codes"), condition=c)
    assert split is not None and split.rows == 6
    import ray.data

    written = ray.data.read_parquet(split.folder).to_pandas()
    table = pq.read_table(shard_paths(labelled, "train")[0], columns=["id", "site"]).to_pandas()
    assert sorted(written["label"]) == sorted(c.values.index(s) for s in table["site"])
    grids, labels = grids_of(ray.data.read_parquet(split.folder), labelled=True)
    assert grids.shape == (6, 16 * 16) and labels is not None and sorted(labels) == sorted(written["label"])
