"""Losses, augmentation and the perceptron's behaviour, without Lightning's Trainer."""

import pytest
import torch

from archbench.data.augment import random_shift
from archbench.errors import ConfigError
from archbench.nets.linear import Perceptron
from archbench.tasks.classification import classification_loss, scores_to_probs
from archbench.tasks.optim import OPTIMIZERS, build_optimizer


def _fit_perceptron(x: torch.Tensor, y: torch.Tensor, epochs: int = 200) -> float:
    torch.manual_seed(0)
    net = Perceptron([2], 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(epochs):
        for i in torch.randperm(len(y)):  # Rosenblatt: one sample at a time
            optimizer.zero_grad()
            classification_loss("perceptron", net(x[i : i + 1]), y[i : i + 1]).backward()
            optimizer.step()
    return float(((net(x).squeeze(-1) > 0).long() == y).float().mean())


def test_perceptron_separates_linearly_separable_data():
    torch.manual_seed(1)
    x = torch.cat([torch.randn(40, 2) + 3, torch.randn(40, 2) - 3])
    y = torch.cat([torch.ones(40), torch.zeros(40)]).long()
    assert _fit_perceptron(x, y) == 1.0


def test_perceptron_visibly_fails_on_xor():
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1, 0])
    assert _fit_perceptron(x, y) <= 0.75


def test_perceptron_criterion_only_counts_mistakes():
    scores = torch.tensor([[2.0], [-1.0], [0.0]], requires_grad=True)
    target = torch.tensor([1, 1, 0])
    loss = classification_loss("perceptron", scores, target)
    loss.backward()
    assert loss.item() == pytest.approx(1 / 3)  # only the second sample is wrong by 1
    assert scores.grad[0].item() == 0 and scores.grad[1].item() < 0 and scores.grad[2].item() > 0


def test_binary_and_multiclass_probabilities_sum_to_one():
    assert torch.allclose(scores_to_probs(torch.randn(5, 1)).sum(1), torch.ones(5))
    assert torch.allclose(scores_to_probs(torch.randn(5, 7)).sum(1), torch.ones(5))


def test_cross_entropy_handles_one_output_as_binary():
    scores, target = torch.tensor([[10.0], [-10.0]]), torch.tensor([1, 0])
    assert classification_loss("cross_entropy", scores, target).item() < 1e-3
    assert classification_loss("mse", torch.randn(4, 3), torch.tensor([0, 1, 2, 0])).item() > 0
    with pytest.raises(ConfigError, match="valid: cross_entropy, perceptron, mse"):
        classification_loss("hinge", scores, target)


def test_label_smoothing_softens_the_training_target_only():
    """model.label_smoothing=ε: cross-entropy against (1 − ε)·one-hot + ε/K, for one output (binary)
    as for K; the task's validation loss stays plain; a bad value or another loss fails in one line."""
    from archbench.nets.linear import Logistic
    from archbench.tasks.classification import ClassificationTask

    scores, target = torch.tensor([[2.0, -1.0], [0.5, 1.5]]), torch.tensor([0, 1])
    soft = torch.tensor([[0.95, 0.05], [0.05, 0.95]])
    expected = -(soft * scores.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(classification_loss("cross_entropy", scores, target, 0.1), expected)
    one = scores[:, :1] - scores[:, 1:]  # the same odds as one logit for class 0 ...
    binary = classification_loss("cross_entropy", -one, target, 0.1)  # ... so class 1's logit is −one
    torch.testing.assert_close(binary, expected)
    task = ClassificationTask(Logistic([2], 2), num_classes=2, label_smoothing=0.1)
    x = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    plain = classification_loss("cross_entropy", task.net(x), target)
    assert task._step((x, target))[0].item() == pytest.approx(plain.item())
    assert task.training_step((x, target), 0).item() != pytest.approx(plain.item())
    for bad in ({"label_smoothing": 1.0}, {"label_smoothing": 0.1, "loss": "mse"}):
        with pytest.raises(ConfigError, match="model.label_smoothing"):
            ClassificationTask(Logistic([2], 2), num_classes=2, **bad)


def test_random_shift_moves_images_and_sequences_but_keeps_shape():
    torch.manual_seed(0)
    image = torch.zeros(8, 1, 8, 8)
    image[:, :, 3:5, 3:5] = 1
    shifted = random_shift(image, 0.25)
    assert shifted.shape == image.shape and not torch.allclose(shifted, image)
    sequence = torch.linspace(0, 1, 40).repeat(6, 1, 1)
    assert random_shift(sequence, 0.1).shape == (6, 1, 40)
    assert torch.allclose(random_shift(image, 0.0), image, atol=1e-6)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_builds(name):
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = build_optimizer(params, {"name": name, "lr": 0.1, "weight_decay": 0.01})
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


def test_adadelta_takes_its_rho_from_the_config_group():
    """Kim (2014)'s optimizer: conf/optimizer/adadelta.yaml's rho reaches torch, a typo is refused."""
    from archbench.config import compose

    cfg = compose(["optimizer=adadelta"])
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], dict(cfg.optimizer))
    assert isinstance(optimizer, torch.optim.Adadelta)
    assert optimizer.param_groups[0]["rho"] == 0.95 and optimizer.param_groups[0]["lr"] == 1.0
    with pytest.raises(ConfigError, match="rho"):
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], {**cfg.optimizer, "betas": [0.9, 0.99]})
    with pytest.raises(ConfigError, match="optimizer.rho"):
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], {**cfg.optimizer, "rho": 1.5})
