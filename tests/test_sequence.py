"""Recurrent and Transformer nets, and character language models."""

import pytest
import torch

from archbench.errors import ConfigError, IncompatibleError
from archbench.nets.recurrent import CharRNN, RecurrentNet
from archbench.nets.transformer import CharTransformer, TransformerClassifier
from archbench.tasks.language_model import CharLanguageModel


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_recurrent_classifier_shapes(cell, bidirectional, pooling):
    net = RecurrentNet([1, 40], 10, cell=cell, hidden_size=16, num_layers=2,
                       bidirectional=bidirectional, pooling=pooling)
    assert net(torch.randn(3, 1, 40)).shape == (3, 10)
    assert net.head.in_features == 16 * (2 if bidirectional else 1)


def test_bidirectional_last_state_sees_both_ends():
    torch.manual_seed(0)
    net = RecurrentNet([1, 12], 2, cell="gru", hidden_size=8, bidirectional=True).eval()
    x = torch.randn(1, 1, 12)
    changed = x.clone()
    changed[..., 0] += 5  # first step: only the backward direction's final state reads it last
    assert not torch.allclose(net(x), net(changed))


def test_recurrent_nets_on_images_need_rows_layout():
    with pytest.raises(IncompatibleError, match="data.layout=rows"):
        RecurrentNet([1, 8, 8], 10)
    assert RecurrentNet([8, 8], 10, hidden_size=4)(torch.randn(2, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_transformer_classifier_shapes(pooling, positions):
    net = TransformerClassifier([1, 40], 10, d_model=16, n_heads=4, patch_size=4,
                                pooling=pooling, positions=positions)
    assert net(torch.randn(3, 1, 40)).shape == (3, 10)
    with pytest.raises(IncompatibleError, match="do not tile"):
        TransformerClassifier([1, 40], 10, patch_size=3)
    with pytest.raises(ConfigError, match="divisible"):
        TransformerClassifier([1, 40], 10, d_model=10, n_heads=4)


def test_overlapping_patches_see_every_window():
    """patch_stride < patch_size: one token per window start; each token embeds exactly its window."""
    net = TransformerClassifier([2, 40], 10, d_model=16, n_heads=4, patch_size=8, patch_stride=4)
    assert net.encoder.pos.shape[1] == 9  # starts 0, 4, …, 32
    x = torch.randn(3, 2, 40)
    assert net(x).shape == (3, 10)
    seen = []
    net.embed.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    net(x)
    window = x[:, :, 12:20].transpose(1, 2).reshape(3, -1)  # fourth token: steps 12..19, step-major
    assert torch.equal(seen[0][:, 3], window)
    with pytest.raises(IncompatibleError, match="do not tile"):
        TransformerClassifier([1, 40], 10, patch_size=8, patch_stride=5)


@pytest.mark.parametrize("net_cls", [CharTransformer, CharRNN])
def test_language_models_are_causal(net_cls):
    torch.manual_seed(0)
    kwargs = {"d_model": 32, "n_layers": 2} if net_cls is CharTransformer else {"hidden_size": 32}
    net = net_cls([16], 20, **kwargs).eval()
    ids = torch.randint(0, 20, (2, 16))
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 20
    before, after = net(ids), net(changed)
    assert before.shape == (2, 16, 20)
    assert torch.allclose(before[:, :10], after[:, :10], atol=1e-6)  # the past ignores the future
    assert not torch.allclose(before[:, 10:], after[:, 10:])


def test_bidirectional_language_model_is_refused():
    with pytest.raises(IncompatibleError, match="sees the future"):
        CharRNN([16], 20, bidirectional=True)


def _overfit(net_cls, text: str, steps: int = 300, **kwargs) -> tuple[CharLanguageModel, float]:
    torch.manual_seed(0)
    vocab = sorted(set(text))
    model = CharLanguageModel(net_cls([len(text) - 1], len(vocab), **kwargs), vocab, len(text) - 1)
    ids = model.encode(text).unsqueeze(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(ids[:, :-1])[0], ids[0, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, loss.item()


@pytest.mark.parametrize("net_cls, kwargs", [
    (CharTransformer, {"d_model": 32, "n_layers": 2, "n_heads": 2}),
    (CharRNN, {"cell": "lstm", "hidden_size": 64, "num_layers": 1}),
])
def test_language_model_overfits_a_short_string(net_cls, kwargs):
    text = "hello archbench, hello world. "
    model, loss = _overfit(net_cls, text, **kwargs)
    assert loss < 0.05
    assert model.generate("hello arch", 5, temperature=0.01, seed=0) == "hello archbench"


def test_sampling_is_reproducible_with_a_seed():
    torch.manual_seed(0)
    vocab = list("abcdefgh ")
    model = CharLanguageModel(CharTransformer([8], len(vocab), d_model=16, n_layers=1, n_heads=2), vocab, 8)
    first = model.generate("abc", 40, temperature=1.0, top_k=5, seed=3)
    assert first == model.generate("abc", 40, temperature=1.0, top_k=5, seed=3)
    assert first != model.generate("abc", 40, temperature=1.0, top_k=5, seed=4)
    assert len(first) == 43 and first.startswith("abc")


def test_vocabulary_round_trips_and_rejects_unknown_characters():
    vocab = sorted(set("To be, or not to be"))
    model = CharLanguageModel(CharRNN([8], len(vocab), hidden_size=8), vocab, 8)
    assert model.decode(model.encode("be or not")) == "be or not"
    with pytest.raises(ConfigError, match=r"outside the vocabulary: \['Z', 'q'\]"):
        model.encode("Zq be")
