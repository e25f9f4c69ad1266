"""Vision: the CNN families' shapes and sizes, image augmentation, and the CIFAR-10 and
Fashion-MNIST readers on small files generated in exactly the official formats."""

import gzip
import hashlib
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch
from conftest import call_cli
from test_data import prepare

from archbench.data.augment import Augmentation, random_crop, random_flip
from archbench.data.sources.cifar import CIFAR10_FILES
from archbench.data.sources.idx import FASHION_MNIST_FILES
from archbench.data.store import load_all
from archbench.errors import ConfigError, DataError, IncompatibleError
from archbench.nets.alexnet import AlexNet
from archbench.nets.cnn import LeNet5
from archbench.nets.common import count_parameters
from archbench.nets.inception import Inception
from archbench.nets.resnet import CifarResNet
from archbench.nets.vgg import VGG
from archbench.tasks.classification import ClassificationTask

FAMILIES = {"lenet5": LeNet5, "alexnet": AlexNet, "vgg": VGG, "inception": Inception, "resnet": CifarResNet}
# parameter counts of each family with its conf/model defaults, on 1×28×28 and 3×32×32
# (lenet5 on 3×32×32: the PyTorch tutorial's net; resnet: ResNet-20, option A)
PARAMETERS = {
    "lenet5": (61_706, 62_006), "alexnet": (1_421_674, 1_882_026), "vgg": (613_114, 613_402),
    "inception": (86_910, 87_198), "resnet": (269_434, 269_722),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [[1, 28, 28], [3, 32, 32], [1, 8, 8]])
def test_every_family_maps_images_to_class_scores(family, shape):
    net = FAMILIES[family](shape, 10)
    assert net(torch.randn(3, *shape)).shape == (3, 10)


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_counts_on_28x28_grey_and_32x32_colour(family):
    counts = tuple(count_parameters(FAMILIES[family](shape, 10)) for shape in ([1, 28, 28], [3, 32, 32]))
    assert counts == PARAMETERS[family]


def test_lenet5_is_the_tutorials_net_on_cifar_and_upsamples_tiny_images_only_when_allowed():
    assert count_parameters(LeNet5([3, 32, 32], 10)) == 62_006
    assert LeNet5([1, 8, 8], 10)(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(IncompatibleError, match="upsample_small"):
        LeNet5([1, 8, 8], 10, upsample_small=False)


@pytest.mark.parametrize(("depth", "shortcut", "expected"), [
    (20, "A", 269_722), (32, "A", 464_154), (56, "A", 853_018), (20, "B", 272_474), (56, "B", 855_770)])
def test_cifar_resnets_have_he_et_al_sizes(depth, shortcut, expected):
    # He et al. (2016) Table 6: ResNet-20 0.27 M, ResNet-32 0.46 M, ResNet-56 0.85 M parameters
    net = CifarResNet([3, 32, 32], 10, depth=depth, shortcut=shortcut)
    assert count_parameters(net) == expected
    assert len([m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]) \
        + 1 == depth  # 6n + 2 weighted layers: 3×3 convs plus the linear layer


def test_resnet_and_vgg_refuse_bad_sizes_with_the_valid_choices():
    with pytest.raises(ConfigError, match="6n\\+2"):
        CifarResNet([3, 32, 32], 10, depth=21)
    with pytest.raises(ConfigError, match="valid: A, B"):
        CifarResNet([3, 32, 32], 10, shortcut="C")
    with pytest.raises(ConfigError, match="valid: vgg11, vgg13, vgg16, vgg19"):
        VGG([3, 32, 32], 10, layout="vgg12")
    with pytest.raises(IncompatibleError, match="images"):
        VGG([30], 2)


def test_vgg16_layout_has_thirteen_convs():
    net = VGG([3, 32, 32], 10, layout="vgg16", width=0.125)
    assert len([m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]) == 13


def test_random_crop_takes_a_window_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    out = random_crop(x, 2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[i, :, dy:dy + 6, dx:dx + 6], out[i])]
        assert windows, "every crop is a 6×6 window of the zero-padded image"


def test_random_flip_mirrors_some_images_and_leaves_the_rest():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 5, 5)
    out = random_flip(x)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54


def test_augmentation_is_seeded_and_keeps_shapes():
    augment = Augmentation(shift=0.1, crop=4, flip=True)
    x = torch.randn(8, 3, 32, 32)
    torch.manual_seed(5)
    first = augment(x)
    torch.manual_seed(5)
    assert torch.equal(first, augment(x)) and first.shape == x.shape
    assert not torch.equal(first, x)


@pytest.mark.parametrize("asked", [{"shift": 0.1}, {"crop": 2}, {"flip": True}, {"time_mask": 2},
                                   {"freq_mask": 2}, {"noise_snr": (10.0, 20.0), "log_mel": ((0.0,), (1.0,))}])
def test_augmentation_skips_its_checks_only_when_nothing_is_asked(asked):
    """``identity`` (the per-step fast path) is set by no option alone; any one option clears it."""
    nothing = Augmentation()
    x = torch.randn(4, 1, 8, 8)
    assert nothing.identity and nothing(x) is x
    assert not Augmentation(**asked).identity
    assert Augmentation(**asked) == Augmentation(**asked) and "identity" not in repr(nothing)


def test_augmentation_touches_training_batches_only():
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3 * 8 * 8, 10)

        def forward(self, x):
            seen.append(x.clone())
            return self.linear(x.flatten(1))

    task = ClassificationTask(Recorder(), 10, augment={"shift": 0.0, "crop": 2, "flip": True})
    batch = (torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,)))
    task._step(batch)  # what validation_step and test_step run
    assert torch.equal(seen[-1], batch[0])
    torch.manual_seed(1)
    task.training_step(batch, 0)
    assert not torch.equal(seen[-1], batch[0]) and seen[-1].shape == batch[0].shape


def test_crop_and_flip_need_images():
    with pytest.raises(ConfigError, match="need images"):
        Augmentation.from_data_config({"augment_crop": 4}, "sequence")
    assert Augmentation.from_data_config({"augment_shift": 0.1}, "sequence").shift == 0.1


# ---- CIFAR-10 in the official python-pickle format -------------------------------------------

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(folder, per_batch=20, seed=0):
    """cifar-10-batches-py/ as the official tarball holds it: pickled dicts with bytes keys,
    b'data' uint8 (N, 3072) channel-major rows, b'labels' a list of ints; batches.meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[:, :1024] = np.array(labels, dtype=np.uint8)[:, None] * 25  # red plane encodes the class
        batch = {b"batch_label": f"{name} of 5".encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [c.encode() for c in CLASSES],
            b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in CIFAR10_FILES}


def cifar_cfg(root, md5, **extra):
    return {"root": str(root), "md5": md5, "seed": 42, "val_fraction": 0.1, "normalize": "per_channel",
            **extra}


def test_cifar10_reads_official_batches_with_class_names_and_per_channel_statistics(tmp_path):
    md5 = write_cifar(tmp_path / "raw" / "cifar-10-batches-py")
    meta = prepare("cifar10", cifar_cfg(tmp_path / "raw", md5), tmp_path / "c")
    assert meta.splits == {"train": 90, "val": 10, "test": 20}
    assert meta.input_shape == [3, 32, 32] and meta.class_names == CLASSES
    assert meta.normalization["per"] == "channel" and len(meta.normalization["mean"]) == 3
    _, splits = load_all(tmp_path / "c")
    train = splits["train"]["x"]
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
    # the red plane still tells the class: pixels and labels stayed together
    red = splits["test"]["x"][:, 0].mean(dim=(1, 2))
    assert np.corrcoef(red.numpy(), splits["test"]["y"].numpy())[0, 1] > 0.99


def test_cifar10_extracts_the_official_tarball(tmp_path):
    md5 = write_cifar(tmp_path / "build" / "cifar-10-batches-py")
    root = tmp_path / "raw"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    tar_md5 = hashlib.md5((root / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    meta = prepare("cifar10", cifar_cfg(root, md5, tarball_md5=tar_md5), tmp_path / "c")
    assert meta.splits["test"] == 20 and (root / "cifar-10-batches-py" / "test_batch").is_file()
    # data.download=true: fetched from the configured URL (here a file:// one), MD5-checked, extracted
    fetched = tmp_path / "fetched"
    url = (root / "cifar-10-python.tar.gz").as_uri()
    again = prepare("cifar10", cifar_cfg(fetched, md5, tarball_md5=tar_md5, download=True, url=url), tmp_path / "d")
    assert again.checksum == meta.checksum and (fetched / "cifar-10-python.tar.gz").is_file()
    with pytest.raises(DataError, match="not the official"):
        prepare("cifar10", cifar_cfg(tmp_path / "bad", md5, tarball_md5="0" * 32, download=True, url=url),
                tmp_path / "e")


def test_cifar10_refuses_a_wrong_md5_and_a_truncated_batch(tmp_path):
    folder = tmp_path / "raw" / "cifar-10-batches-py"
    md5 = write_cifar(folder)
    with pytest.raises(DataError, match="data_batch_3 has MD5 .* not the official"):
        prepare("cifar10", cifar_cfg(tmp_path / "raw", {**md5, "data_batch_3": "0" * 32}), tmp_path / "a")
    whole = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(whole[: len(whole) // 2])
    unpinned = {k: v for k, v in md5.items() if k != "data_batch_2"}
    with pytest.raises(DataError, match="data_batch_2 is not a CIFAR python batch"):
        prepare("cifar10", cifar_cfg(tmp_path / "raw", unpinned), tmp_path / "b")


def test_cifar10_missing_files_are_one_line_naming_files_directory_and_download(tmp_path):
    result = call_cli("archbench-prepare", "cifar10", f"data.root={tmp_path / 'nowhere'}",
                      f"paths.data_dir={tmp_path / 'prepared'}")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    for part in ("data_batch_1", "test_batch", "batches.meta", str(tmp_path / "nowhere"), "data.download=true"):
        assert part in message


# ---- Fashion-MNIST in the IDX format -----------------------------------------------------------

def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_fashion(root, n=200, full=False):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    keys = ("test", "train") if full else ("test",)
    md5 = {}
    for key in keys:
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28))
        images[:, 0, 0] = labels * 20
        md5[FASHION_MNIST_FILES[f"{key}_images"][0]] = write_idx(root / FASHION_MNIST_FILES[f"{key}_images"][0], images)
        md5[FASHION_MNIST_FILES[f"{key}_labels"][0]] = write_idx(root / FASHION_MNIST_FILES[f"{key}_labels"][0], labels)
    return md5


def test_fashion_mnist_t10k_pair_is_split_and_all_four_files_give_the_official_split(tmp_path):
    md5 = write_fashion(tmp_path / "t10k")
    cfg = {"root": str(tmp_path / "t10k"), "md5": md5, "seed": 42, "val_fraction": 0.1, "test_fraction": 0.2}
    meta = prepare("fashion_mnist", cfg, tmp_path / "a")
    assert meta.splits == {"train": 144, "val": 16, "test": 40}
    assert meta.class_names[0] == "T-shirt/top" and meta.class_names[9] == "Ankle boot"
    assert meta.input_shape == [1, 28, 28] and "t10k only" in meta.source["layout"]
    md5 = write_fashion(tmp_path / "full", n=100, full=True)
    meta = prepare("fashion_mnist", {**cfg, "root": str(tmp_path / "full"), "md5": md5}, tmp_path / "b")
    assert meta.splits == {"train": 90, "val": 10, "test": 100}


def test_fashion_mnist_refuses_official_md5_mismatch_and_truncated_files(tmp_path):
    md5 = write_fashion(tmp_path / "raw")
    with pytest.raises(DataError, match="not the official bef4ecab320f06d8554ea6380940ec79"):
        prepare("fashion_mnist", {"root": str(tmp_path / "raw")}, tmp_path / "a")  # official MD5s
    images = tmp_path / "raw" / FASHION_MNIST_FILES["test_images"][0]
    whole = gzip.decompress(images.read_bytes())
    with gzip.open(images, "wb") as handle:
        handle.write(whole[:-100])
    md5[images.name] = hashlib.md5(images.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="truncated"):
        prepare("fashion_mnist", {"root": str(tmp_path / "raw"), "md5": md5}, tmp_path / "b")


# ---- recipes and the vision pipeline -----------------------------------------------------------

def test_cifar10_recipes_start_from_the_option_they_name():
    from archbench.config import compose

    resnet = compose(["data=cifar10", "model=resnet"])
    assert dict(resnet.optimizer) == {"name": "momentum", "lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9,
                                      "nesterov": False}  # no adam betas left over
    assert dict(resnet.scheduler) == {"name": "multistep", "milestones": [82, 123], "gamma": 0.1}
    assert resnet.data.augment_crop == 4 and resnet.data.augment_flip and resnet.trainer.max_epochs == 182
    lenet = compose(["data=cifar10", "model=lenet5"])
    assert dict(lenet.scheduler) == {"name": "none"} and lenet.data.augment_crop == 0
    assert compose(["data=cifar10", "model=resnet", "optimizer=adam"]).optimizer.name == "adam"
    mine = compose(["data=cifar10", "model=resnet", "optimizer.weight_decay=5e-4", "+scheduler.gamma=0.2"])
    assert (mine.optimizer.name, mine.optimizer.weight_decay) == ("momentum", 5e-4)  # my key survives
    assert dict(mine.scheduler) == {"name": "multistep", "milestones": [82, 123], "gamma": 0.2}


def test_vision_pipeline_trains_every_family_with_the_default_pipelines_dependencies():
    import yaml
    from conftest import REPO

    main = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["classify"]["do"]["deps"]
    stages = yaml.safe_load((REPO / "vision" / "dvc.yaml").read_text())["stages"]
    for stage in ("train", "more"):
        deps = stages[stage]["do"]["deps"]
        assert [d for d in deps if not d.startswith("data/")] == [d for d in main if d != "${item.reads}"]
    assert stages["prepare"]["do"]["outs"] == ["data/vision/${key}"]
    params = yaml.safe_load((REPO / "vision" / "params.yaml").read_text())
    assert params["more_pairs"] == {}
    assert {item["model"] for item in params["pairs"].values()} >= set(FAMILIES) | {"cnn"}
    for key, item in params["pairs"].items():
        assert (REPO / "conf" / "recipe" / f"{item['data']}_{item['model']}.yaml").is_file(), key


def test_vision_pipeline_commands_resolve_and_stay_out_of_the_default_repro():
    from conftest import REPO
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        [stage] = repo.stage.collect("vision/dvc.yaml:train@mnist-resnet")
        assert "data=mnist model=resnet seed=42 paths.data_dir=data/vision data.root=../shared/datasets/mnist" \
            in stage.cmd and "hydra.sweep.dir=results/vision/train/mnist-resnet" in stage.cmd
        [prepare] = repo.stage.collect("vision/dvc.yaml:prepare@mnist")
        assert prepare.cmd == "archbench-prepare mnist data.root=../shared/datasets/mnist paths.data_dir=data/vision"
        upstream = repo.stage.collect("compare", with_deps=True)
        assert upstream and not [s.addressing for s in upstream if "vision" in s.relpath]
