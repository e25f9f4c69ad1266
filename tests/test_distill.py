"""Knowledge distillation (``distill.teacher``): the loss, the teacher's loading and its refusals,
and a student that demonstrably learns from the teacher rather than the labels."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archbench.errors import ConfigError, DataError, IncompatibleError
from archbench.tasks.distill import Distillation, distillation_loss
from archbench.train import train


def test_soft_loss_is_zero_when_the_student_agrees_and_scales_by_temperature_squared():
    teacher = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    assert distillation_loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    t = 2.0
    p = F.softmax(teacher / t, -1)
    by_hand = (p * (p.log() - F.log_softmax(student / t, -1))).sum(-1).mean() * t * t
    assert distillation_loss(student, teacher, temperature=t).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_hard_loss_is_cross_entropy_to_the_teachers_class():
    teacher = torch.tensor([[2.0, -1.0], [0.0, 3.0], [5.0, 4.0]])
    student = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    expected = F.cross_entropy(student, torch.tensor([0, 1, 0]))
    assert distillation_loss(student, teacher, hard=True).item() == pytest.approx(expected.item())


def test_a_lone_logit_distils_as_the_two_class_softmax_it_stands_for():
    student, teacher = torch.tensor([[0.3], [-1.2]]), torch.tensor([[2.0], [0.5]])
    as_two = distillation_loss(torch.cat([torch.zeros(2, 1), student], -1),
                               torch.cat([torch.zeros(2, 1), teacher], -1), temperature=3.0)
    assert distillation_loss(student, teacher, temperature=3.0).item() == pytest.approx(as_two.item())


@pytest.mark.parametrize("section", [{"weight": 0.0}, {"weight": 1.5}, {"temperature": 0}, {"teachr": "x"}])
def test_bad_settings_are_refused(section):
    with pytest.raises(ConfigError):
        Distillation.from_config({"distill": {"teacher": "x", **section}})


def _always_class_zero(teacher_dir):
    """Rewrite a trained logistic teacher's checkpoint so that it predicts class 0 for every input."""
    path = teacher_dir / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key, value in checkpoint["state_dict"].items():
        if key.startswith("net."):
            value.zero_()
            if key.endswith("bias"):
                value[0] = 10.0
    torch.save(checkpoint, path)


def test_a_student_learns_what_its_teacher_says_not_only_the_labels(make_cfg, tmp_path):
    common = ("data=digits", "model=logistic", "trainer.max_epochs=4", "threads=1")
    teacher_metrics = train(make_cfg(*common, output="teacher"))
    assert teacher_metrics["test/acc"] > 0.5  # chance is 0.1
    _always_class_zero(tmp_path / "teacher")

    student = make_cfg(*common, f"distill.teacher={tmp_path / 'teacher'}", "distill.weight=1.0",
                       "distill.hard=true", output="student")
    train(student)
    predictions = np.load(tmp_path / "student" / "test_predictions.npz")["probs"].argmax(-1)
    # taught by the teacher alone (weight 1), the student says class 0 to nearly everything
    assert (predictions == 0).mean() > 0.9
    # the teacher is neither trained with the student nor saved in its checkpoint
    state = torch.load(tmp_path / "student" / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert not any(key.startswith("teacher") for key in state)

    mixed = make_cfg(*common, f"distill.teacher={tmp_path / 'teacher'}", "distill.weight=0.2", output="mixed")
    assert train(mixed)["test/acc"] > 0.5  # labels still dominate at weight 0.2


def test_a_teacher_on_other_data_or_no_teacher_is_refused_in_one_line(make_cfg, tmp_path):
    train(make_cfg("data=digits", "model=logistic", "trainer.max_epochs=1", output="teacher"))
    with pytest.raises(ConfigError, match="trained on other prepared data"):
        train(make_cfg("data=breast_cancer", "model=logistic", f"distill.teacher={tmp_path / 'teacher'}"))
    with pytest.raises(DataError, match="not a finished archbench-train run folder"):
        train(make_cfg("data=digits", "model=logistic", f"distill.teacher={tmp_path / 'nowhere'}"))
    replicas = tmp_path / "replicas"
    (replicas / "seed7").mkdir(parents=True)
    (replicas / "seed7" / "run.json").write_text("{}")
    with pytest.raises(DataError, match="holds seed replicates: name one, e.g. .*seed7"):
        train(make_cfg("data=digits", "model=logistic", f"distill.teacher={replicas}"))
    run = json.loads((tmp_path / "teacher" / "run.json").read_text())
    (tmp_path / "teacher" / "run.json").write_text(json.dumps({**run, "status": "failed"}))
    with pytest.raises(ConfigError, match="has not finished"):
        train(make_cfg("data=digits", "model=logistic", f"distill.teacher={tmp_path / 'teacher'}"))
    with pytest.raises(IncompatibleError, match="only classification"):
        train(make_cfg("data=digits", "model=autoencoder", f"distill.teacher={tmp_path / 'teacher'}"))


def test_the_teacher_is_the_checkpoint_its_run_tested(make_cfg, tmp_path):
    """The averaged perceptron tests its last checkpoint (select=last): that is what a reader gets."""
    from archbench.tasks.base import finished_run

    train(make_cfg("data=digits", "model=perceptron", "trainer.max_epochs=2", output="perceptron"))
    folder = tmp_path / "perceptron"
    run = json.loads((folder / "run.json").read_text())
    assert run["best_checkpoint"].endswith("last.ckpt")
    _, _, weights = finished_run(folder, run["data_checksum"], "distill.teacher")
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert weights and all(torch.equal(value, last[f"net.{key}"]) for key, value in weights.items())
    (folder / "checkpoints" / "last.ckpt").rename(folder / "checkpoints" / "moved.ckpt")
    with pytest.raises(DataError, match="its tested checkpoint checkpoints/last.ckpt is missing"):
        finished_run(folder, run["data_checksum"], "distill.teacher")


def test_a_teacher_can_be_named_by_its_mlflow_run(make_cfg, tmp_path):
    common = ("data=digits", "model=logistic", "trainer.max_epochs=1")
    train(make_cfg(*common, output="teacher"))
    run_id = json.loads((tmp_path / "teacher" / "run.json").read_text())["run_id"]
    student = make_cfg(*common, f"distill.teacher=runs:/{run_id}", "distill.weight=1.0", "distill.hard=true",
                       output="student")
    assert train(student)["test/acc"] > 0.3  # taught by a 1-epoch logistic teacher alone; chance is 0.1
    with pytest.raises(DataError, match="distill.teacher=runs:/0123abc: not found in sqlite"):
        train(make_cfg(*common, "distill.teacher=runs:/0123abc"))
    with pytest.raises(ConfigError, match="models:/<name>@<alias>"):
        train(make_cfg(*common, "distill.teacher=models:/archbench-digits-logistic"))
