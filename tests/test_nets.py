import pytest
import torch
from conftest import repickled

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.cnn import ConvNet, LeNet5
from archbench.nets.common import ACTIVATIONS, count_parameters
from archbench.nets.linear import Logistic, Perceptron
from archbench.nets.mlp import MLP

SHAPES = {"image28": [1, 28, 28], "image8": [1, 8, 8], "sequence": [1, 40], "tabular": [30]}


def test_reference_cnn_has_421642_parameters_on_28x28():
    assert count_parameters(ConvNet([1, 28, 28], 10)) == 421_642


@pytest.mark.parametrize("shape", ["image28", "image8", "sequence"])
def test_cnn_output_shape(shape):
    net = ConvNet(SHAPES[shape], 10)
    assert net(torch.randn(5, *SHAPES[shape])).shape == (5, 10)


def test_cnn_is_1d_on_sequences_and_2d_on_images():
    assert isinstance(ConvNet(SHAPES["sequence"], 10).features[0], torch.nn.Conv1d)
    assert isinstance(ConvNet(SHAPES["image8"], 10).features[0], torch.nn.Conv2d)


def test_cnn_on_tabular_data_says_why():
    with pytest.raises(IncompatibleError, match=r"cnn needs images .* shape is \(30,\)"):
        ConvNet(SHAPES["tabular"], 2)


def test_cnn_that_pools_input_away_says_so():
    with pytest.raises(IncompatibleError, match="shrinks input"):
        ConvNet([1, 8, 8], 10, channels=[8, 8, 8, 8])


@pytest.mark.parametrize("shape", ["image28", "image8", "sequence", "tabular"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_output_shape_for_every_activation(shape, activation):
    net = MLP(SHAPES[shape], 10, hidden=[16, 8], activation_name=activation, batch_norm=True)
    assert net(torch.randn(4, *SHAPES[shape])).shape == (4, 10)


def test_mlp_reference_layers():
    net = MLP([1, 28, 28], 10, hidden=[128], dropout=0.2)
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    assert count_parameters(net) == 784 * 128 + 128 + 128 * 10 + 10


def test_mlp_linear_skip_adds_a_logistic_regression_of_the_input():
    """model.net.linear_skip=true (Wide & Deep): scores = the MLP's + a linear map of the input, so
    with the last layer zeroed the net is exactly that linear model; off, the net and its random
    initial weights are what they were (no extra draws), and an MLP pickled before the option runs."""
    torch.manual_seed(0)
    plain = MLP([30], 2, hidden=[16])
    torch.manual_seed(0)
    wide = MLP([30], 2, hidden=[16], linear_skip=True)
    pairs = zip(plain.state_dict().values(), wide.layers.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert count_parameters(wide) == count_parameters(plain) + 30 * 2 + 2
    x = torch.randn(5, 30)
    torch.nn.init.zeros_(wide.layers[-1].weight)
    torch.nn.init.zeros_(wide.layers[-1].bias)
    torch.testing.assert_close(wide.eval()(x), wide.skip(x))
    del plain.__dict__["skip"]  # as pickled before the option existed
    loaded = repickled(plain)
    torch.testing.assert_close(loaded(x), plain.eval().layers(x), rtol=0, atol=0)


def test_mlp_rejects_bad_activation_and_dropout():
    with pytest.raises(ConfigError, match="valid: sigmoid, tanh, relu, leaky_relu"):
        MLP([4], 2, activation_name="swish")
    with pytest.raises(ConfigError, match="dropout"):
        MLP([4], 2, dropout=1.5)


def test_linear_models_have_one_output_for_two_classes_and_one_per_class_otherwise():
    assert Perceptron([30], 2)(torch.randn(3, 30)).shape == (3, 1)
    assert Perceptron([1, 8, 8], 10)(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert Logistic([30], 2)(torch.randn(3, 30)).shape == (3, 1)
    assert Logistic([30], 2, binary_head=False)(torch.randn(3, 30)).shape == (3, 2)


def test_lenet5_shapes_and_limits():
    assert LeNet5([1, 28, 28], 10)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert LeNet5([3, 32, 32], 10)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(IncompatibleError, match="at least 28"):
        LeNet5([1, 8, 8], 10, upsample_small=False)
