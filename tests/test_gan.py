"""GAN nets, the adversarial task, the FID/coverage score and a tracked end-to-end run."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import call_cli
from torch.utils.data import DataLoader, TensorDataset

from archbench.errors import IncompatibleError
from archbench.nets.cnn import ConvNet
from archbench.nets.gan import DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator
from archbench.tasks.adversarial import AdversarialTask
from archbench.tasks.quality import FrozenClassifier, PixelSpace, class_coverage, fid
from archbench.train import train

NETS = [(MLPGenerator, MLPDiscriminator), (DCGenerator, DCDiscriminator)]
SHAPES = [[1, 8, 8], [1, 28, 28]]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("generator_cls", "discriminator_cls"), NETS)
def test_generator_images_in_tanh_range_and_discriminator_probabilities(generator_cls, discriminator_cls,
                                                                         shape):
    torch.manual_seed(0)
    generator, discriminator = generator_cls(shape, noise_dim=16), discriminator_cls(shape)
    images = generator(torch.randn(5, 16) * 3)
    assert images.shape == (5, *shape)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0
    probs = discriminator(images)
    assert probs.shape == (5,)
    assert ((probs > 0) & (probs < 1)).all()


def test_dcgan_rejects_sides_not_divisible_by_four():
    with pytest.raises(IncompatibleError, match="multiples of 4"):
        DCGenerator([1, 10, 10])


def _task(shape=(1, 8, 8), **kwargs) -> AdversarialTask:
    torch.manual_seed(0)
    space = PixelSpace(0.3, 0.4)
    classifier = FrozenClassifier(ConvNet(list(shape), 10), space, list(shape))
    return AdversarialTask(MLPGenerator(list(shape), noise_dim=8, hidden=[32, 32]),
                           MLPDiscriminator(list(shape), hidden=[32]), classifier, 10, noise_dim=8,
                           num_samples=64, **kwargs)


def test_one_training_step_changes_both_networks():
    task = _task()
    before = {name: [p.detach().clone() for p in net.parameters()]
              for name, net in (("generator", task.generator), ("discriminator", task.discriminator))}
    frozen = [p.detach().clone() for p in task.classifier.parameters()]
    data = TensorDataset(torch.randn(16, 1, 8, 8), torch.zeros(16, dtype=torch.long))
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(task, DataLoader(data, batch_size=16))
    for name, net in (("generator", task.generator), ("discriminator", task.discriminator)):
        changed = [not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)]
        assert all(changed), f"{name}: some parameters did not move"
    assert all(torch.equal(a, b) for a, b in zip(frozen, task.classifier.parameters(), strict=True))


def test_fid_is_zero_for_a_set_against_itself_and_large_for_noise(make_cfg):
    from archbench.config import to_dict
    from archbench.data.datamodule import TensorDataModule
    from archbench.data.prepare import ensure_prepared

    cfg = make_cfg("data=digits")
    meta, data_dir = ensure_prepared(to_dict(cfg.data))
    data = TensorDataModule(data_dir)
    data.load()
    space = PixelSpace(meta.normalization["mean"], meta.normalization["std"])
    torch.manual_seed(0)
    extractor = FrozenClassifier(ConvNet([1, 8, 8], 10), space, [1, 8, 8])
    train_images = space.to_generator(data.splits["train"].x)
    test_images = space.to_generator(data.splits["test"].x)
    noise = torch.rand_like(test_images) * 2 - 1

    assert fid(extractor, test_images, test_images) == pytest.approx(0, abs=1e-3)
    real_vs_real = fid(extractor, train_images, test_images)
    real_vs_noise = fid(extractor, train_images, noise)
    assert real_vs_noise > 20 * real_vs_real

    covered, shares = class_coverage(extractor, test_images, 10)
    assert shares.sum() == pytest.approx(1) and 1 <= covered <= 10


def test_gan_refuses_tabular_and_text_data(make_cfg):
    with pytest.raises(IncompatibleError, match="model gan.*needs image data; breast_cancer is tabular"):
        train(make_cfg("data=breast_cancer", "model=gan"))
    with pytest.raises(IncompatibleError, match="needs image data; pydoc_text is text"):
        train(make_cfg("data=pydoc_text", "model=gan"))


def test_archbench_train_refuses_a_gan_on_sequences_before_training_its_scoring_classifier(make_cfg, tmp_path):
    """Before, the entry point first trained the FID classifier (a cnn) on mnist1d's sequences, or
    on a table failed with the cnn's own error ("cnn needs images or sequences")."""
    from archbench.provision import scoring_classifier

    cfg = make_cfg("data=mnist1d", "model=gan", f"paths.output_root={tmp_path / 'outputs'}")
    assert cfg.model.quality.classifier == "auto"
    with pytest.raises(IncompatibleError, match="task adversarial \\(model gan\\) needs image data; mnist1d is sequence"):
        scoring_classifier(cfg)
    assert not (tmp_path / "outputs" / "quality").exists()


def test_gan_on_digits_end_to_end(make_cfg, tmp_path):
    """A cnn run scores the GAN (classifier given as its run directory); metrics, anchors, grids,
    and the logged generator model all land."""
    classifier_cfg = make_cfg("data=digits", "model=cnn", output="cnn")
    train(classifier_cfg)
    cfg = make_cfg("data=digits", "model=gan", "logger.log_model=true", f"model.quality.classifier={tmp_path / 'cnn'}",
                   "model.quality.num_samples=256", "model.sample_every_n_epochs=1", output="gan")
    metrics = train(cfg)
    out = tmp_path / "gan"
    for key in ("test/fid", "test/fid_real_floor", "test/fid_untrained", "test/class_coverage",
                "val/fid_best"):
        assert metrics[key] == metrics[key], key  # not NaN
    assert metrics["test/fid_real_floor"] < metrics["test/fid_untrained"]
    assert 0 <= metrics["test/class_coverage"] <= 1
    assert (out / "samples.png").is_file() and (out / "samples" / "epoch_002.png").is_file()
    header = (out / "curves.csv").read_text().splitlines()[0]
    assert {"train/d_loss", "train/g_loss", "val/fid"} <= set(header.split(","))

    run = json.loads((out / "run.json").read_text())
    client = mlflow.MlflowClient(cfg.logger.tracking_uri)
    artifacts = {a.path for a in client.list_artifacts(run["run_id"], "samples")}
    assert "samples/epoch_001.png" in artifacts
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    sampler = mlflow.pytorch.load_model(run["model_uri"])
    images = sampler(torch.randn(3, 100))
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    # archbench-generate samples it as a grid (before, it took language models only)
    grid = tmp_path / "grid.png"
    drawn = call_cli("archbench-generate", "--model-uri", run["model_uri"], "--tracking-uri",
                     cfg.logger.tracking_uri, "--samples", "12", "--seed", "3", "--output", str(grid), "--npy")
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert drawn.stdout.strip() == f"archbench-generate: 12 images (1, 8, 8) from seed 3 -> {grid}, {grid.with_suffix('.npy')}"
    with torch.no_grad():
        want = sampler(torch.randn(12, 100, generator=torch.Generator().manual_seed(3)))
    np.testing.assert_allclose(np.load(grid.with_suffix(".npy")), want.numpy(), atol=1e-6)
    assert grid.stat().st_size > 500
