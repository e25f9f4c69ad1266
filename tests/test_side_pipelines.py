"""The pipelines beside the default one, for data read from outside the repository: text
classification (text/dvc.yaml, SST-2) and translation (translation/dvc.yaml, Multi30k). Their
training stages depend on what the default pipeline's do, their data stays out of data/prepared,
and `dvc repro` of the default pipeline never runs them."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

PIPELINES = {  # folder: (dataset, a pair's model, the seeds its params.yaml lists)
    "text": ("sst2", "cnn", "42,43,44"),
    "translation": ("multi30k", "seq2seq_attention", "42"),
}


@pytest.mark.parametrize("folder", PIPELINES)
def test_side_pipeline_stages_depend_on_what_the_default_pipelines_runs_do(folder):
    data = PIPELINES[folder][0]
    main = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["classify"]["do"]["deps"]
    stages = yaml.safe_load((REPO / folder / "dvc.yaml").read_text())["stages"]
    deps = stages["train"]["do"]["deps"]
    assert deps[0] == f"data/{folder}/{data}" and deps[1:] == [
        d.replace("${item.data}", data) for d in main if d != "${item.reads}"]
    # the default compare stage depends on all of data/prepared: this data must live elsewhere
    assert not any(out.startswith("data/prepared") for out in stages["prepare"]["outs"])
    params = yaml.safe_load((REPO / folder / "params.yaml").read_text())
    for key, item in params["pairs"].items():
        assert (REPO / "conf" / "recipe" / f"{data}_{item['model']}.yaml").is_file(), key


@pytest.mark.parametrize("folder", PIPELINES)
def test_side_pipeline_commands_resolve_and_stay_out_of_the_default_repro(folder):
    from dvc.repo import Repo

    data, model, seeds = PIPELINES[folder]
    with Repo(str(REPO)) as repo:
        [stage] = repo.stage.collect(f"{folder}/dvc.yaml:train@{data}-{model}")
        assert (f"model={model} seed={seeds} data.root=../shared/datasets/{data} paths.data_dir=data/{folder}"
                in stage.cmd) and f"hydra.sweep.dir=results/{folder}/train/{data}-{model}" in stage.cmd
        upstream = repo.stage.collect("compare", with_deps=True)  # what `dvc repro` runs
        assert upstream and not [s.addressing for s in upstream if folder in s.relpath]
