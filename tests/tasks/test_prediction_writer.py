"""``multiattn predict`` writes its results: every config has the JSON-lines prediction writer."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from multiattn.checkpoint import load_system
from multiattn.lightning_cli import build_cli
from multiattn.tasks.common.prediction_writer import JSONLinesPredictionWriter, split_items

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
WRITER = "multiattn.tasks.common.prediction_writer.JSONLinesPredictionWriter"


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_writes_predictions_under_its_run_folder(config):
    trainer = yaml.safe_load(config.read_text())["trainer"]
    writers = [c for c in trainer.get("callbacks", []) if c["class_path"] == WRITER]
    assert len(writers) == 1, config.name
    assert writers[0]["init_args"]["output_dir"] == f"{trainer['default_root_dir']}/predictions"


@pytest.mark.parametrize("config", [c for c in CONFIGS if not c.stem.endswith("_tiny")], ids=lambda c: c.name)
def test_full_configs_log_to_tensorboard(config):
    logger = yaml.safe_load(config.read_text())["trainer"]["logger"]
    assert logger["class_path"] == "lightning.pytorch.loggers.TensorBoardLogger", config.name


def test_split_items_cuts_batched_values_and_keeps_lists():
    batched = {"label": torch.tensor([3, 1]), "corners": None, "p": torch.tensor([[0.1, 0.9], [0.8, 0.2]])}
    items = split_items(batched)
    assert [int(i["label"]) for i in items] == [3, 1] and all("corners" not in i for i in items)
    assert torch.equal(items[1]["p"], torch.tensor([0.8, 0.2]))
    records = [{"file": "a.wav", "text": "x"}, {"file": "b.wav", "text": "y"}]
    assert split_items(records) == records
    assert split_items([]) == [] and split_items(None) == []
    with pytest.raises(ValueError, match="differ in length"):
        split_items({"a": torch.zeros(2), "b": torch.zeros(3)})


class _Regression(pl.LightningModule):
    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.fail_at = fail_at

    def predict_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError("interrupted")
        return {"y": self.net(batch).squeeze(1), "skipped": None}


def _predict(writer: JSONLinesPredictionWriter, module: pl.LightningModule) -> None:
    data = DataLoader(torch.arange(20, dtype=torch.float32).reshape(10, 2), batch_size=4)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.predict(module, data, return_predictions=False)


def test_writer_writes_one_line_per_item_and_keeps_the_old_file_when_interrupted(tmp_path, one_thread):
    writer = JSONLinesPredictionWriter(str(tmp_path / "predictions"), exclude=["unused"])
    module = _Regression()
    _predict(writer, module)
    path = tmp_path / "predictions" / "predictions.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(10))
    with torch.no_grad():
        expected = module.net(torch.arange(20, dtype=torch.float32).reshape(10, 2)).squeeze(1)
    assert [r["y"] for r in records] == pytest.approx(expected.tolist())
    before = path.read_text()

    with pytest.raises(RuntimeError, match="interrupted"):
        _predict(JSONLinesPredictionWriter(str(tmp_path / "predictions")), _Regression(fail_at=1))
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["predictions.jsonl"]  # no temporary left


@pytest.mark.slow
def test_predict_command_writes_the_classifiers_results(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "configs" / "stn_tiny.yaml")
    build_cli(["fit", "-c", config, "--trainer.max_epochs", "1"])
    ckpt = tmp_path / "outputs" / "stn_tiny" / "checkpoints" / "last.ckpt"
    build_cli(["predict", "-c", config, "--ckpt_path", str(ckpt)])

    path = tmp_path / "outputs" / "stn_tiny" / "predictions" / "last.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(64))  # the whole test split, in order
    assert all(
        "warped" not in r and len(r["corners"]) == 4 and len(r["probabilities"]) == 10 for r in records
    )

    # The same labels as the checkpoint's model over the same split.
    from multiattn.tasks.stn.data import STNDataModule
    from multiattn.tasks.stn.system import STNSystem

    system = load_system(STNSystem, ckpt).eval()
    data = yaml.safe_load(Path(config).read_text())["data"]["init_args"]
    datamodule = STNDataModule(**data)
    datamodule.setup("test")
    labels = []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            labels += system.predict_step(batch)["label"].tolist()
    assert [r["label"] for r in records] == labels
