"""Neural style transfer: Gram matrices, the feature networks, a tiny transfer whose losses fall,
and one-line errors for missing VGG-19 weights and unknown choices."""

import numpy as np
import pytest
import torch
from conftest import call_cli, run_cli

from archbench.errors import ConfigError
from archbench.nets.features import RandomFilters, load_vgg19_weights, vgg19_features
from archbench.stylize import LayerFeatures, gram, transfer

# the convolutions' positions in torchvision's vgg19().features
TORCHVISION_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def write_png(path, pixels):
    from PIL import Image

    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 32)
    content = np.stack([np.tile(ramp, (32, 1)), np.tile(ramp[:, None], (1, 32)), np.full((32, 32), 128)], -1)
    stripes = np.zeros((32, 32, 3))
    stripes[:, ::4] = (255, 40, 40)
    stripes += rng.integers(0, 30, (32, 32, 3))
    return write_png(tmp_path / "content.png", content), write_png(tmp_path / "style.png", np.clip(stripes, 0, 255))


def test_gram_is_the_normalised_inner_product_of_feature_maps():
    maps = torch.arange(12.0).view(1, 2, 2, 3)
    flat = maps.view(2, 6)
    assert torch.allclose(gram(maps), flat @ flat.T / 12)
    assert torch.allclose(gram(maps), gram(maps).T)


def test_vgg19_features_load_torchvisions_layout_position_by_position():
    net = vgg19_features()
    names = [n for n, m in net.named_children() if isinstance(m, torch.nn.Conv2d)]
    assert names[0] == "conv1_1" and names[-1] == "conv5_4" and len(names) == 16
    assert list(net.named_children())[TORCHVISION_CONVS[4]][0] == "conv3_1"  # same positions
    convs = [m for m in net.children() if isinstance(m, torch.nn.Conv2d)]
    state = {}
    for index, conv in zip(TORCHVISION_CONVS, convs, strict=True):
        state[f"features.{index}.weight"] = torch.full_like(conv.weight, float(index))
        state[f"features.{index}.bias"] = torch.full_like(conv.bias, -float(index))
    state["classifier.0.weight"] = torch.zeros(3, 3)  # torchvision's head: ignored
    load_vgg19_weights(net, state)
    assert float(net.conv1_1.weight.detach()[0, 0, 0, 0]) == 0 and float(net.conv5_4.bias.detach()[0]) == -34
    assert float(net.conv3_1.weight.detach().mean()) == 10


def test_layer_features_refuse_unknown_layers_with_the_valid_names():
    with pytest.raises(ConfigError, match="valid: k3, k5"):
        LayerFeatures(RandomFilters([3, 5], maps=4), ["k9"])
    features = LayerFeatures(vgg19_features(), ["relu1_1", "conv2_1"])
    out = features(torch.rand(1, 3, 16, 16))
    assert set(out) == {"relu1_1", "conv2_1"} and out["conv2_1"].shape == (1, 128, 8, 8)


def test_a_tiny_transfer_lowers_the_style_loss_and_keeps_pixels_in_range():
    torch.manual_seed(0)
    content, style = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24) ** 3
    features = LayerFeatures(RandomFilters([3, 5], maps=8), ["k3", "k5"])
    result = transfer(features, content, style, content_layers=["k5"], style_layers=["k3", "k5"],
                      steps=30, content_weight=1.0, style_weight=1e4)
    assert result.style_loss[-1] < result.style_loss[0] / 10
    assert float(result.image.min()) >= 0 and float(result.image.max()) <= 1
    assert result.content_loss[-1] < result.content_reference  # closer to the content than the style image


def test_stylize_writes_the_image_and_curve_and_logs_an_mlflow_run(tmp_path, images):
    import mlflow

    content, style = images
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = call_cli("archbench-stylize", f"content={content}", f"style={style}", "size=24", "steps=20",
                      "random.kernels=[3,5]", "random.maps=8", "layers.random.content=[k5]",
                      "layers.random.style=[k3,k5]", f"output={tmp_path / 'out' / 'x.png'}",
                      f"tracking_uri={uri}", "style_weight=1e4")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "x.png").is_file() and (tmp_path / "out" / "x_losses.png").is_file()
    mlflow.set_tracking_uri(uri)
    [run] = mlflow.search_runs(experiment_names=["archbench-stylize"], output_format="list")
    assert run.data.metrics["style_loss_fall"] > 1 and run.data.params["features"] == "random"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "style_loss")
    assert len(history) >= 10
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)} == {"x.png", "x_losses.png"}


def test_missing_vgg19_weights_are_one_line_naming_the_cache_path(tmp_path, images):
    content, style = images
    # the installed console script, in its own process
    result = run_cli("archbench-stylize", f"content={content}", f"style={style}", "features=vgg19",
                     f"tracking_uri=sqlite:///{tmp_path / 'db'}", env={"TORCH_HOME": str(tmp_path / "torch")})
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message


def test_unknown_features_and_missing_images_are_one_line(tmp_path, images):
    content, style = images
    result = call_cli("archbench-stylize", f"content={content}", f"style={style}", "features=alexnet")
    assert result.returncode == 2 and "valid: random, vgg19" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = call_cli("archbench-stylize", f"content={tmp_path / 'none.jpg'}", f"style={style}")
    assert result.returncode == 2 and "image not found" in result.stderr
    result = call_cli("archbench-stylize", f"content={content}", "stepz=3")  # was "Could not override 'stepz'."
    assert result.returncode == 2 and result.stderr.startswith(
        "archbench-stylize: error: unknown key stepz; did you mean steps? the config has: content, ")


@pytest.mark.parametrize("override, message", [
    ("steps=0", "steps must be an integer ≥ 1, got 0"),
    ("steps=abc", "steps must be an integer ≥ 1, got 'abc'"),
    ("size=2", "size must be an integer ≥ 8, got 2"),
    ("style_weight=-1", "style_weight must be a finite number ≥ 0, got -1"),
    ("content_weight=nan", "content_weight must be a finite number ≥ 0, got nan"),
    ("tracking_uri=./mlruns", "tracking_uri must be a database or server URI (sqlite:///PATH, "
                              "postgresql+psycopg2://…, http://HOST:PORT; MLFLOW_TRACKING_URI sets it), got './mlruns'"),
])
def test_numbers_that_cannot_work_are_one_line_and_log_no_run(tmp_path, images, override, message):
    """Before, steps=abc was a traceback and steps=0 logged a run of an untouched image."""
    content, style = images
    result = call_cli("archbench-stylize", f"content={content}", f"style={style}",
                      f"tracking_uri=sqlite:///{tmp_path / 'db'}", override)
    assert result.returncode == 2 and result.stderr.strip() == f"archbench-stylize: error: {message}"
    assert not (tmp_path / "db").exists()


def test_an_archbench_classifier_run_is_a_feature_network(make_cfg, tmp_path, images):
    from archbench.train import train

    cfg = make_cfg("data=digits", "model=cnn", "trainer.max_epochs=1", "logger.log_model=true")
    train(cfg)
    import mlflow

    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    [run] = mlflow.search_runs(experiment_names=[cfg.logger.experiment_name], output_format="list")
    content, style = images
    result = call_cli("archbench-stylize", f"content={content}", f"style={style}", "size=24", "steps=10",
                      f"features=runs:/{run.info.run_id}/model", f"tracking_uri={cfg.logger.tracking_uri}",
                      f"output={tmp_path / 'run.png'}", "style_weight=1e4")
    assert result.returncode == 0, result.stderr
    assert "runs:/" in result.stdout and (tmp_path / "run.png").is_file()
    bad = call_cli("archbench-stylize", f"content={content}", f"style={style}", "steps=2",
                   f"features=runs:/{run.info.run_id}/model", f"tracking_uri={cfg.logger.tracking_uri}",
                   "layers.run.style=[features.9]")
    assert bad.returncode == 2 and "unknown feature layer 'features.9'; valid:" in bad.stderr
