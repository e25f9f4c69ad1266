"""ONNX export: every classifier family and the language models' one-step forward, run by
onnxruntime, within 1e-4 of PyTorch on a test-split batch (archbench.export)."""

from __future__ import annotations

import pytest
import torch

from archbench.export import check_parity, export_with_parity, first_test_batch

# one model per net family (nets/<family>.py), on the embedded data it trains on by default
TENSOR_CASES = [("digits", "logistic"), ("digits", "mlp"), ("digits", "lenet5"), ("digits", "resnet"),
                ("digits", "vgg"), ("digits", "alexnet"), ("digits", "inception"),
                ("mnist1d", "lstm"), ("mnist1d", "transformer")]
LM_CASES = [("pydoc_text", "transformer"), ("pydoc_text", "lstm")]


def _logged_form(make_cfg, data: str, model: str):
    """The model archbench logs for (data, model), freshly initialised, and its first test batch."""
    from archbench.train import build

    cfg, task, datamodule, built = build(make_cfg(f"data={data}", f"model={model}"))
    return task.exported_model(built.module).cpu().eval(), first_test_batch(cfg, 64)


@pytest.mark.parametrize(("data", "model"), TENSOR_CASES + LM_CASES, ids=lambda v: v)
def test_onnx_matches_pytorch_on_the_first_test_batch(make_cfg, tmp_path, data, model):
    torch.manual_seed(0)
    net, batch = _logged_form(make_cfg, data, model)
    path, parity, reason = export_with_parity(net, batch, "onnx", tmp_path)
    assert path.suffix == ".onnx" and reason is None
    assert parity.batch_size == len(batch) == 64
    assert parity.max_abs_diff < 1e-4, parity
    assert parity.same_argmax == 1.0
    if data == "pydoc_text":  # ids → next-character logits for every position
        assert batch.dtype == torch.long and path.stat().st_size > 1000


@pytest.mark.parametrize("model", ["boe", "cnn", "transformer"])
def test_text_classifiers_export_with_a_dynamic_length(tmp_path, model):
    """Word ids padded to any length: the length axis stays dynamic in the ONNX graph."""
    from archbench.config import compose
    from archbench.tasks.base import instantiate_net
    from archbench.tasks.classification import ProbabilityModel

    torch.manual_seed(0)
    text_net = compose([f"model={model}", "data=sst2"]).model.text_net
    net = ProbabilityModel(instantiate_net(text_net, model, input_shape=[24], num_classes=2,
                                           vocab_size=50)).eval()
    ids = torch.randint(2, 50, (6, 12))
    ids[0, 5:] = 0  # <pad>
    path, _, reason = export_with_parity(net, ids, "auto", tmp_path)
    assert path.suffix == ".onnx" and reason is None
    longer = torch.randint(2, 50, (3, 20))
    longer[1, 7:] = 0
    assert check_parity(net, path, "onnx", longer).max_abs_diff < 1e-4


def test_packed_recurrent_text_nets_fall_back_to_torchscript_for_any_length(tmp_path):
    """The recurrent text nets pack their padded sequences, which ONNX cannot express: ``auto``
    writes a TorchScript trace, which holds every length and batch size."""
    from archbench.config import compose
    from archbench.tasks.base import instantiate_net
    from archbench.tasks.classification import ProbabilityModel

    torch.manual_seed(0)
    text_net = compose(["model=lstm", "data=sst2"]).model.text_net
    net = ProbabilityModel(instantiate_net(text_net, "lstm", input_shape=[24], num_classes=2,
                                           vocab_size=50)).eval()
    ids = torch.randint(2, 50, (6, 12))
    ids[0, 5:] = 0
    path, parity, reason = export_with_parity(net, ids, "auto", tmp_path)
    assert path.suffix == ".pt" and reason and parity.max_abs_diff < 1e-4
    longer = torch.randint(2, 50, (3, 30))
    longer[1, 7:] = 0
    assert check_parity(net, path, "torchscript", longer).max_abs_diff < 1e-4


class _RowCounting(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * len(x.tolist())  # Python reads the batch: no graph holds that


def test_a_model_no_format_can_hold_is_refused_in_one_line(tmp_path):
    """ONNX export fails, and a TorchScript trace would fix the batch size (caught on inputs of
    another shape): refused, with both reasons."""
    from archbench.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot export this model to onnx or torchscript: .*one input shape"):
        export_with_parity(_RowCounting(), torch.randn(10, 4), "auto", tmp_path)


def test_torchscript_on_request_and_unknown_formats_list_the_valid_ones(tmp_path):
    from archbench.errors import ConfigError
    from archbench.export import export_forward

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(-1))
    batch = torch.randn(10, 4)
    path, parity, reason = export_with_parity(net, batch, "torchscript", tmp_path)
    assert path.suffix == ".pt" and parity.max_abs_diff == 0.0 and reason is None
    with pytest.raises(ConfigError, match="valid: onnx, torchscript"):
        export_forward(net, batch, "tflite", tmp_path / "x")
