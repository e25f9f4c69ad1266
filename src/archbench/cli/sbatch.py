"""``archbench-sbatch --nodes N --gpus-per-node G [...] -- OVERRIDES``: print a SLURM batch script
that trains one archbench run on N nodes × G GPUs: one ``torchrun`` agent per node (``srun``), a
c10d rendezvous on the job's first node, Lightning DDP. Submit it with ``sbatch``::

    archbench-sbatch --nodes 2 --gpus-per-node 8 -- data=mnist model=resnet > job.sh && sbatch job.sh
"""

from __future__ import annotations

import argparse
import shlex

from archbench.cli.common import at_least, fail

PROGRAM = "archbench-sbatch"


def sbatch_script(overrides: list[str], nodes: int, gpus_per_node: int, cpus_per_gpu: int = 8,
                  hours: float = 4.0, port: int = 29500, name: str = "archbench",
                  partition: str | None = None, tracking_uri: str | None = None) -> str:
    """The batch script's text (no SLURM is needed to write it)."""
    minutes = max(1, round(hours * 60))
    run_dir = f"outputs/runs/{name}-${{SLURM_JOB_ID}}"
    train = ["-m", "archbench.cli.train", "trainer=ddp", f"trainer.num_nodes={nodes}",
             f"trainer.devices={gpus_per_node}", *overrides]
    data_overrides = [o for o in overrides if o.startswith(("data.", "paths."))]
    data = next((o.split("=", 1)[1] for o in overrides if o.startswith("data=")), None) or _default_data()
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1            # one torchrun agent per node; it starts the GPU processes",
        f"#SBATCH --gpus-per-node={gpus_per_node}",
        f"#SBATCH --cpus-per-task={cpus_per_gpu * gpus_per_node}",
        f"#SBATCH --time={minutes // 60:02d}:{minutes % 60:02d}:00",
        "#SBATCH --output=outputs/slurm/%x-%j.out",
        *([f"#SBATCH --partition={partition}"] if partition else []),
        "set -euo pipefail",
        *([f"export MLFLOW_TRACKING_URI={shlex.quote(tracking_uri)}"] if tracking_uri else []),
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "# prepare the data once, before any rank reads it",
        "srun --nodes=1 --ntasks=1 " + shlex.join(["archbench-prepare", data, *data_overrides]),
        "# env -u SLURM_NTASKS: Lightning then reads torchrun's environment, not SLURM's one task per node",
        "srun env -u SLURM_NTASKS torchrun --nnodes=\"$SLURM_JOB_NUM_NODES\" "
        f"--nproc-per-node={gpus_per_node} --rdzv-id=\"$SLURM_JOB_ID\" --rdzv-backend=c10d "
        f"--rdzv-endpoint=\"$head_node:{port}\" {shlex.join(train)} hydra.run.dir={run_dir}",
    ]
    return "\n".join(lines) + "\n"


def _default_data() -> str:
    """The dataset a run composes when no ``data=`` is given (conf/config.yaml's default)."""
    from archbench.config import compose

    return str(compose([]).data.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, required=True, help="machines (one torchrun agent each)")
    parser.add_argument("--gpus-per-node", type=int, required=True, help="GPUs per machine (one DDP process each)")
    parser.add_argument("--cpus-per-gpu", type=int, default=8, help="CPU cores per GPU process (default 8)")
    parser.add_argument("--hours", type=float, default=4.0, help="the job's time limit")
    parser.add_argument("--port", type=int, default=29500, help="the rendezvous port on the first node")
    parser.add_argument("--name", default="archbench", help="job name (and run directory prefix)")
    parser.add_argument("--partition", default=None, help="the SLURM partition (default: the cluster's)")
    parser.add_argument("--tracking-uri", default=None, help="exported as MLFLOW_TRACKING_URI in the job")
    parser.add_argument("overrides", nargs="*", help="archbench-train overrides (after --)")
    args = parser.parse_args(argv)
    for option, value in (("--nodes", args.nodes), ("--gpus-per-node", args.gpus_per_node),
                          ("--cpus-per-gpu", args.cpus_per_gpu), ("--port", args.port)):
        at_least(PROGRAM, option, value, 1)
    at_least(PROGRAM, "--hours", args.hours, 0, exclusive=True)
    from archbench.cli.common import check_group_choices
    from archbench.config import compose, config_groups

    problem = check_group_choices(args.overrides, config_groups())
    if problem:
        fail(PROGRAM, problem)
    try:  # the job's own config must compose here, not after it waited in the queue
        compose(["trainer=ddp", *args.overrides])
    except Exception as err:  # Hydra's override and missing-key errors
        fail(PROGRAM, f"the overrides do not compose: {str(err).splitlines()[0]}")
    print(sbatch_script(args.overrides, args.nodes, args.gpus_per_node, args.cpus_per_gpu, args.hours,
                        args.port, args.name, args.partition, args.tracking_uri), end="")


if __name__ == "__main__":
    main()
