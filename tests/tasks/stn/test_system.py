"""STNSystem end to end: the tiny config overfits one batch, every stn YAML instantiates, `fit`
writes checkpoints and overlays, checkpoints rebuild themselves, `multiattn classify` prints JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from multiattn.checkpoint import load_system
from multiattn.lightning_cli import build_cli
from multiattn.stn import region_iou
from multiattn.tasks.stn.app import main as classify_main
from multiattn.tasks.stn.data import STNBatch, STNDataModule
from multiattn.tasks.stn.sources.distort import DistortionSpec, distort_digits
from multiattn.tasks.stn.sources.glyphs import load_handwritten_digits
from multiattn.tasks.stn.system import STNSystem

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("stn*.yaml"))
TINY = CONFIG_DIR / "stn_tiny.yaml"


def _tiny_model_args() -> dict:
    return yaml.safe_load(TINY.read_text())["model"]["init_args"]


def _batch(count: int = 16, variant: str = "RTS") -> STNBatch:
    hand = load_handwritten_digits()
    made = distort_digits(
        hand.images[:200],
        hand.labels[:200],
        DistortionSpec(variant=variant),
        num_samples=count,
        seed=0,
        progress=False,
    )
    images = torch.from_numpy(made.images).float()[:, None] / 255.0  # (B, H, W) -> (B, 1, H, W)
    return STNBatch(images=images, labels=torch.from_numpy(made.labels), boxes=torch.from_numpy(made.boxes))


def test_stn_configs_exist():
    assert {c.name for c in CONFIGS} >= {"stn.yaml", "stn_tiny.yaml", "stn_mnist.yaml"}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_config_parses_and_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.read_text().splitlines()[0] == f"# multiattn fit -c configs/{config.name}"
    cli = build_cli(["-c", str(config)], run=False)
    assert isinstance(cli.model, STNSystem) and isinstance(cli.datamodule, STNDataModule)
    assert not list(tmp_path.iterdir())  # instantiating generates nothing


def test_tiny_config_overfits_one_batch():
    torch.manual_seed(0)
    args = _tiny_model_args()
    system = STNSystem(**args)
    batch = _batch()
    optimizer = system.configure_optimizers()  # the config's AdamW groups (scheduler: none)
    system.train()
    losses = []
    for _ in range(100):
        output = system.model(batch.images)
        loss = torch.nn.functional.cross_entropy(output.logits, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    system.eval()
    with torch.no_grad():
        accuracy = (system.model(batch.images).logits.argmax(1) == batch.labels).float().mean()
    assert losses[-1] < 0.1 * losses[0] and float(accuracy) == 1.0


def test_system_rejects_data_of_another_shape(tmp_path):
    class _Trainer:
        datamodule = STNDataModule(source="cifar10", root=str(tmp_path), variant="plain")

    system = STNSystem(**_tiny_model_args())
    system._trainer = _Trainer()  # only what setup() reads
    with pytest.raises(ValueError, match="in_channels"):
        system.setup("predict")


def test_box_loss_and_iou_agree_with_an_exact_region():
    system = STNSystem(**{**_tiny_model_args(), "box_loss": {"weight": 1.0, "margin": 0.0}})
    boxes = torch.tensor([[9.5, 4.5, 29.5, 34.5], [-0.5, -0.5, 41.5, 41.5]])
    size = 42.0
    low = (boxes[:, :2] * 2 + 1) / size - 1  # pixel edges -> normalised (align_corners=False)
    high = (boxes[:, 2:] * 2 + 1) / size - 1
    scale, shift = (high - low) / 2, (high + low) / 2  # (B, 2)
    theta = torch.zeros(2, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale[:, 0], scale[:, 1], shift
    assert float(system._box_loss(theta, boxes, (42, 42))) < 1e-8
    assert torch.allclose(region_iou(system.corners(theta, (42, 42)), boxes), torch.ones(2), atol=1e-5)
    assert float(system._box_loss(torch.eye(2, 3).expand(2, 2, 3), boxes, (42, 42))) > 0.01


def test_tps_system_box_loss_iou_and_warped_grid_overlay():
    # The box loss and IoU of a TPS model read its (exact) corner control points; the overlay
    # draws the output grid bent through the spline.
    args = _tiny_model_args()
    args["model"]["transformer"]["transform"] = "tps"
    system = STNSystem(**{**args, "box_loss": {"weight": 1.0, "margin": 0.0}})
    batch = _batch(4)
    loss, output = system._step(batch, "train")
    assert output.theta.shape == (4, 16, 2) and torch.isfinite(loss)
    loss.backward()
    head = system.model.transformer.head.linear
    assert head.bias.grad is not None and head.bias.grad.abs().sum() > 0  # the box loss reaches the controls
    boxes = torch.tensor([[-0.5, -0.5, 41.5, 41.5]]).expand(4, 4)
    assert float(system._box_loss(output.theta.detach(), boxes, (42, 42))) < 1e-8  # identity = whole input
    figure = system.overlay_figure(
        batch.images, output.warped.detach(), torch.full((4, 10), 0.1), output.theta.detach()
    )
    lines = [line for axes in figure.axes for line in axes.get_lines()]
    assert len(lines) == 4 * 10  # 5 rows + 5 columns of the warped grid per example


def test_predict_step_outputs():
    system = STNSystem(**_tiny_model_args()).eval()
    batch = _batch(4)
    with torch.no_grad():
        out = system.predict_step(batch, 0)
    assert out["label"].shape == (4,) and out["probabilities"].shape == (4, 10)
    assert torch.allclose(out["probabilities"].sum(1), torch.ones(4), atol=1e-5)
    assert out["theta"].shape == (4, 2, 3) and out["corners"].shape == (4, 4, 2)
    # Identity at initialisation: the region is the whole 42x42 input.
    assert torch.allclose(
        out["corners"][0], torch.tensor([[-0.5, -0.5], [41.5, -0.5], [41.5, 41.5], [-0.5, 41.5]]), atol=1e-4
    )
    args = _tiny_model_args()
    args["model"]["transformer"]["enabled"] = False
    baseline = STNSystem(**args).eval()
    with torch.no_grad():
        assert baseline.predict_step(batch.images)["corners"] is None


def test_fit_checkpoint_and_classify_app(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    build_cli(["fit", "-c", str(TINY), "--trainer.max_epochs", "1"])
    checkpoints = tmp_path / "outputs" / "stn_tiny" / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file() and (checkpoints / "best.ckpt").is_file()
    overlays = list((tmp_path / "outputs" / "stn_tiny" / "logs").rglob("overlays/epoch_000/*.png"))
    assert overlays, "validation overlay not written"
    metrics = (next((tmp_path / "outputs" / "stn_tiny" / "logs").rglob("metrics.csv"))).read_text()
    assert "val/iou50" in metrics and "val/acc" in metrics

    system = load_system(STNSystem, checkpoints / "last.ckpt")
    assert system.class_names == [str(d) for d in range(10)] and tuple(system.hparams.input_size) == (42, 42)
    assert not system.training

    test_images = np.load(tmp_path / "data" / "stn_tiny" / "RTS" / "test_images.npy")
    Image.fromarray(test_images[0]).save(tmp_path / "digit.png")
    wide = np.zeros((42, 84), np.uint8)
    wide[:, 21:63] = test_images[1]
    Image.fromarray(255 - wide).save(tmp_path / "paper.jpg")  # dark ink on light, non-square
    (tmp_path / "broken.png").write_text("not an image")
    capsys.readouterr()
    code = classify_main(
        [
            "digit.png",
            "paper.jpg",
            "broken.png",
            "--ckpt",
            str(checkpoints / "last.ckpt"),
            "--json",
            "--overlay-dir",
            "ov",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # one file failed
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [r["file"] for r in records] == ["digit.png", "paper.jpg"]
    for record in records:
        assert set(record) >= {"file", "label", "probabilities", "corners", "theta", "overlay"}
        assert record["label"] in record["probabilities"]
        assert abs(sum(record["probabilities"].values()) - 1.0) < 1e-4
        assert len(record["corners"]) == 4 and all(len(p) == 2 for p in record["corners"])
        assert Path(record["overlay"]).is_file()
    # Corners are in each file's own pixels: the wide image's region spans its letterboxed square.
    digit_corners = np.array(records[0]["corners"])
    paper_corners = np.array(records[1]["corners"])
    assert np.allclose(paper_corners[:, 0], digit_corners[:, 0] * 2 + 0.5, atol=0.6)
    assert np.allclose(paper_corners[:, 1], digit_corners[:, 1] * 2 + 0.5 - 21, atol=0.6)
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and "broken.png" in errors[0] and "not a readable image" in errors[0]

    code = classify_main(["digit.png", "--ckpt", str(checkpoints / "last.ckpt")])
    assert code == 0 and capsys.readouterr().out.startswith("digit.png: ")
    assert classify_main(["digit.png", "--ckpt", "missing.ckpt"]) == 2
    assert "missing.ckpt" in capsys.readouterr().err


def test_classify_pipeline_draws_a_tps_region_as_its_warped_grid():
    from multiattn.tasks.stn.pipeline import ClassifierPipeline

    torch.manual_seed(0)
    args = _tiny_model_args()
    args["model"]["transformer"]["transform"] = "tps"
    system = STNSystem(**{**args, "input_size": (42, 42)}).eval()
    with torch.no_grad():  # bend the spline: the centre control points move right
        system.model.transformer.head.linear.bias.view(16, 2)[[5, 6, 9, 10], 0] += 0.2
    digit = (_batch(1).images[0, 0].numpy() * 255).astype(np.uint8)
    result = ClassifierPipeline(system, torch.device("cpu"))(Image.fromarray(digit))
    grid = result.attention["grid_decoded"]
    assert tuple(grid.shape) == (10, 17, 2)
    assert float(grid[2, 8, 0]) > float(grid[2, 0, 0] + grid[2, -1, 0]) / 2 + 1.0  # the middle row bends
    figure = result.overlay()
    assert len(figure.axes[0].get_lines()) == 10
