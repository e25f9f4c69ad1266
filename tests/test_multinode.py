"""Two "nodes" on one machine: two torchrun agents (``--nnodes=2 --nproc-per-node=1``) meeting at a
c10d rendezvous on 127.0.0.1 train one model with gloo; the job is killed and its checkpoint
continues on one node. The SLURM example is checked as the sbatch script archbench writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import mlflow
import pytest
from conftest import BIN, REPO, call_cli, free_port

pytestmark = pytest.mark.slow

COMMON = ("data=digits", "model=mlp", "trainer.max_epochs=12", "data.batch_size=64",
          "callbacks.early_stopping.enabled=false", "callbacks.progress_bar=none")


def test_two_torchrun_nodes_train_one_run_whose_checkpoint_resumes_on_one_node(make_cfg, tmp_path):
    from archbench.train import train

    single = train(make_cfg(*COMMON, output="single"))
    store = make_cfg().logger.tracking_uri
    data = make_cfg().paths.data_dir
    out = tmp_path / "two-nodes"
    port = free_port()
    where = (f"paths.data_dir={data}", f"logger.tracking_uri={store}", f"hydra.run.dir={out}")
    # logger.flush_seconds=0: every epoch's metrics reach MLflow as logged, so the SIGKILL below
    # loses none (batched, a kill may lose the last second's, which the history check would see)
    command = ["-m", "archbench.cli.train", *COMMON, *where, "trainer=ddp", "trainer.accelerator=cpu",
               "trainer.precision=32-true", "trainer.deterministic=true", "trainer.devices=1",
               "trainer.num_nodes=2", "logger.flush_seconds=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    agents = [subprocess.Popen(
        [str(BIN / "torchrun"), "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
         f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=archbench-test", *command],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True) for _ in range(2)]
    curves = out / "curves.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (curves.is_file() and len(curves.read_text().splitlines()) > 4):
        if any(a.poll() is not None for a in agents):
            pytest.fail("a torchrun agent ended early: " + " | ".join(a.stderr.read()[-1500:] for a in agents
                                                                       if a.poll() is not None))
        time.sleep(0.02)
    for agent in agents:  # the job dies (both nodes) after 4 of its 12 epochs
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()
    # and its training processes with it: torchrun may start them in sessions of their own, and a
    # survivor would go on writing the run directory the resumed run uses
    subprocess.run(["pkill", "-9", "-f", f"hydra.run.dir={out}"], check=False)
    assert not (out / "metrics.json").exists(), "the job finished before it was killed"
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(store)
    killed = client.get_run(run_id)
    assert killed.info.status == "RUNNING"
    assert killed.data.params["trainer.num_nodes"] == "2" and killed.data.params["trainer.strategy"] == "ddp"

    # one node, one process, the same command otherwise: it continues the run, it does not restart it
    again = call_cli("archbench-train", *COMMON, *where, "trainer=cpu", f"resume={out}")
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["epochs"] == 12
    assert abs(resumed["test/acc"] - single["test/acc"]) <= 0.03, (resumed, single)  # seed noise
    runs = [r for r in client.search_runs([client.get_experiment_by_name("archbench").experiment_id])
            if r.data.tags.get("output_dir") == str(out)]
    assert [r.info.run_id for r in runs] == [run_id]  # one MLflow run for the whole job
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["resumed_with.trainer.strategy"] == "auto"
    epochs = {m.step for m in client.get_metric_history(run_id, "val/acc")}
    assert len(epochs) == 12


def test_the_sbatch_script_runs_one_torchrun_agent_per_node_with_a_composing_command():
    import shlex

    from archbench.config import compose

    result = call_cli("archbench-sbatch", "--nodes", "2", "--gpus-per-node", "8", "--",
                      "data=mnist", "data.root=../shared/datasets/mnist", "model=resnet")
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert script.startswith("#!/bin/bash\n") and "#SBATCH --nodes=2\n" in script
    assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --gpus-per-node=8\n" in script
    [line] = [x for x in script.splitlines() if x.startswith("srun ") and "torchrun" in x]
    words = shlex.split(line.replace("$SLURM_JOB_NUM_NODES", "2").replace("$SLURM_JOB_ID", "7")
                        .replace("${SLURM_JOB_ID}", "7").replace("$head_node", "node1"))
    assert words[:4] == ["srun", "env", "-u", "SLURM_NTASKS"] and words[4] == "torchrun"
    assert {"--nnodes=2", "--nproc-per-node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=node1:29500"} <= set(words)
    train = words[words.index("-m") + 1:]
    assert train[:4] == ["archbench.cli.train", "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=8"]
    assert train[-1] == "hydra.run.dir=outputs/runs/archbench-7"
    cfg = compose(train[1:-1])  # what each rank composes (the run directory aside)
    assert cfg.trainer.num_nodes == 2 and cfg.trainer.strategy == "ddp" and cfg.data.name == "mnist"
    assert "srun --nodes=1 --ntasks=1 archbench-prepare mnist data.root=../shared/datasets/mnist" in script

    default = call_cli("archbench-sbatch", "--nodes", "1", "--gpus-per-node", "2", "--", "model=cnn")
    assert f"archbench-prepare {compose(['model=cnn']).data.name}\n" in default.stdout  # was digits, not the run's data

    bad = call_cli("archbench-sbatch", "--nodes", "2", "--gpus-per-node", "8", "--", "model=resnt")
    assert bad.returncode == 2 and "unknown model 'resnt'; valid:" in bad.stderr and bad.stdout == ""
