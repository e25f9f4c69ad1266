"""Autoencoder and VAE nets, the autoencoding task's losses and bounds, and a tracked end-to-end run."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.autoencoder import Autoencoder
from archbench.nets.cnn import ConvNet
from archbench.tasks.autoencoding import AutoencodingTask, kl_to_standard_normal
from archbench.tasks.quality import FrozenClassifier, PixelSpace
from archbench.train import train

SHAPES = [[1, 8, 8], [1, 28, 28]]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("variational", [True, False])
def test_encoder_and_decoder_shapes(shape, architecture, variational):
    net = Autoencoder(shape, latent_dim=3, variational=variational, architecture=architecture,
                      hidden=[16], base_channels=4)
    x = torch.randn(5, *shape)
    mean, log_var = net.encode(x)
    assert mean.shape == (5, 3)
    assert (log_var is None) == (not variational)
    if variational:
        assert log_var.shape == (5, 3)
    assert net.decode(mean).shape == (5, *shape) and net(x).shape == (5, *shape)


def test_bad_architecture_and_sides_refused_in_one_line():
    with pytest.raises(ConfigError, match="unknown autoencoder architecture 'rnn'; valid: mlp, conv"):
        Autoencoder([1, 8, 8], architecture="rnn")
    with pytest.raises(IncompatibleError, match="multiples of 4"):
        Autoencoder([1, 10, 10], architecture="conv")


def test_kl_is_non_negative_and_zero_only_at_the_prior():
    torch.manual_seed(0)
    mean, log_var = torch.randn(100, 4) * 2, torch.randn(100, 4) * 2
    assert (kl_to_standard_normal(mean, log_var) > 0).all()
    assert torch.allclose(kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))
    # the closed form matches a Monte Carlo estimate of E_q[log q - log p]
    q = torch.distributions.Normal(mean[0], (0.5 * log_var[0]).exp())
    z = q.sample((200_000,))
    estimate = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(-1).mean()
    assert float(estimate) == pytest.approx(float(kl_to_standard_normal(mean[:1], log_var[:1])), rel=0.02)


def _task(shape=(1, 8, 8), variational=True, **kwargs) -> AutoencodingTask:
    torch.manual_seed(0)
    space = PixelSpace(0.3, 0.4)
    classifier = FrozenClassifier(ConvNet(list(shape), 10), space, list(shape))
    net = Autoencoder(list(shape), latent_dim=4, variational=variational, hidden=[32])
    return AutoencodingTask(net, classifier, 10, num_samples=64, **kwargs)


def _images(n=32, seed=1) -> torch.Tensor:
    """Standardised images whose intensities lie in [0, 1] (the space of PixelSpace(0.3, 0.4))."""
    return (torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) - 0.3) / 0.4


def test_reparameterisation_gradients_reach_the_encoder():
    task = _task()
    x = _images()
    losses = task.losses(x, task.targets(x))
    assert losses["kl"].min() >= 0 and losses["recon"].min() > 0
    losses["loss"].mean().backward(retain_graph=True)
    for name, parameter in task.net.encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    task.net.zero_grad()
    losses["recon"].mean().backward()  # through z alone, not only through the KL term
    assert all(p.grad.abs().sum() > 0 for p in task.net.encoder.parameters())


def test_elbo_is_below_the_importance_sampled_log_likelihood():
    task = _task()
    with torch.no_grad():  # a decoder that depends on z, so the bound has a gap to close
        for parameter in task.net.parameters():
            parameter.mul_(3)
    x = _images(64)
    target = task.targets(x)
    torch.manual_seed(2)
    with torch.no_grad():
        elbo = torch.stack([-(p["recon"] + p["kl"]) for p in (task.losses(x, target) for _ in range(200))]).mean()
    log_lik_1 = task.log_likelihood_iw(x, target, k=1).mean()
    log_lik = task.log_likelihood_iw(x, target, k=256).mean()
    assert elbo < log_lik  # IWAE: log p̂_k tightens as k grows, from the ELBO at k = 1
    assert float(log_lik_1) == pytest.approx(float(elbo), abs=0.05 * abs(float(elbo)))
    assert log_lik < 0


def test_dynamic_binarisation_draws_binary_pixels_and_a_fixed_draw_for_evaluation():
    task = _task(binarize="dynamic")
    x = _images()
    drawn = task.targets(x)
    assert set(drawn.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(task.targets(x, fixed_seed=5), task.targets(x, fixed_seed=5))
    unit = task.space.to_unit(task.space.to_generator(x))
    assert float((torch.stack([task.targets(x) for _ in range(400)]).mean(0) - unit).abs().max()) < 0.15
    with pytest.raises(ConfigError, match="unknown model.likelihood 'poisson'; valid: bernoulli, gaussian"):
        _task(likelihood="poisson")


def test_autoencoder_prior_is_the_gaussian_of_its_training_codes():
    task = _task(variational=False)

    class Data:  # what prior() reads: the training split of the datamodule
        splits = {"train": type("Split", (), {"x": _images(500, seed=3)})()}

    task.trainer = type("T", (), {"datamodule": Data()})()
    mean, scale = task.prior(task.net)
    with torch.no_grad():
        codes = task.net.encode(Data.splits["train"].x)[0]
    assert torch.allclose(mean, codes.mean(0), atol=1e-5)
    assert torch.allclose(scale @ scale.T, torch.cov(codes.T), atol=1e-4)
    assert torch.equal(scale, scale.tril())


def test_autoencoders_on_digits_end_to_end(make_cfg, tmp_path):
    """One cnn run scores both; ELBO and IW bound (VAE), FID anchors, the three figures and the
    logged sampler all land."""
    train(make_cfg("data=digits", "model=cnn", "trainer.max_epochs=1", output="cnn"))
    for model in ("vae", "conv_autoencoder"):
        _check_generative_run(make_cfg, tmp_path, model)


def _check_generative_run(make_cfg, tmp_path, model: str) -> None:
    cfg = make_cfg("data=digits", f"model={model}", "logger.log_model=true", "model.latent_dim=2",
                   f"model.quality.classifier={tmp_path / 'cnn'}", "model.quality.num_samples=256",
                   "model.iw_samples=8", "model.sample_every_n_epochs=1", output=model)
    metrics = train(cfg)
    out = tmp_path / model
    for key in ("test/fid", "test/fid_real_floor", "test/fid_untrained", "test/class_coverage", "test/recon"):
        assert metrics[key] == metrics[key], key  # not NaN
    assert metrics["test/fid_real_floor"] < metrics["test/fid_untrained"]
    if model == "vae":
        assert metrics["test/elbo"] < -metrics["test/nll_iw"] + 1.0  # bound (k = 8; IW noise ≪ 1 nat)
        assert metrics["test/kl"] >= 0 and metrics["test/loss"] == pytest.approx(-metrics["test/elbo"], rel=1e-4)
    else:
        assert "test/elbo" not in metrics and "test/nll_iw" not in metrics
    for name in ("samples.png", "reconstructions.png", "latent.png", "samples/epoch_001.png"):
        assert (out / name).stat().st_size > 500, name
    header = (out / "curves.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/recon", "val/loss", "val/fid"} <= set(header)

    run = json.loads((out / "run.json").read_text())
    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"])}
    assert {"reconstructions.png", "latent.png", "samples.png"} <= artifacts
    sampler = mlflow.pytorch.load_model(run["model_uri"])
    images = sampler(torch.randn(3, 2))
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    grid = tmp_path / f"{model}.png"  # archbench-generate reads the noise width (2) from the model
    from archbench.cli.generate import main as generate  # in-process: test_gan.py runs the command

    generate(["--model-uri", run["model_uri"], "--tracking-uri", cfg.logger.tracking_uri, "--samples", "4",
              "--output", str(grid), "--npy"])
    assert np.load(grid.with_suffix(".npy")).shape == (4, 1, 8, 8)
    with pytest.raises(SystemExit) as refused:  # before: ignored, 64 images written
        generate(["--model-uri", run["model_uri"], "--tracking-uri", cfg.logger.tracking_uri, "--prompt", "hi"])
    assert refused.value.code == 2


def test_vae_refuses_tabular_data(make_cfg):
    with pytest.raises(IncompatibleError, match="model vae.*needs image data; breast_cancer is tabular"):
        train(make_cfg("data=breast_cancer", "model=vae"))


def test_generative_table_holds_gans_autoencoders_and_vaes(tmp_path):
    from archbench.report.compare import write_report

    common = {"test/fid_real_floor": 2.0, "test/fid_untrained": 900.0, "test/classes_covered": 10,
              "parameters": 1000, "epochs": 5, "train_seconds": 1.0}
    runs = {"digits-gan": ("gan", "adversarial", {"test/fid": 20.0}),
            "digits-vae": ("vae", "autoencoding", {"test/fid": 30.0, "test/elbo": -25.5, "test/nll_iw": 24.9,
                                                   "test/recon": 20.0}),
            "digits-autoencoder": ("autoencoder", "autoencoding", {"test/fid": 40.0, "test/recon": 18.2})}
    for key, (model, task, metrics) in runs.items():
        folder = tmp_path / "results" / key
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"data": "digits", "model": model, "task": task,
                                                     "num_classes": 10, "run_id": "r"}))
        (folder / "metrics.json").write_text(json.dumps(common | metrics))
    write_report(tmp_path / "results", tmp_path / "reports")
    report = (tmp_path / "reports/comparison.md").read_text()
    assert report.count("## Generative models") == 1
    rows = [line for line in report.splitlines() if line.startswith("| digits |")]
    assert [row.split("|")[2].strip() for row in rows] == ["gan", "vae", "autoencoder"]  # by FID
    assert "| 25.5 | 24.9 |" in rows[1] and "recon 18.2 | – |" in rows[2] and "| – | – |" in rows[0]
    assert ("- **digits**: gan's samples are closest (test FID 20.0); vae 1.5× its FID (30.0), "
            "autoencoder 2.0× its FID (40.0).") in report
