"""``archbench-prepare NAME [NAME ...] [overrides]``: write data/prepared/<name>/ for each dataset
(``<name>-<hash>/`` when the overrides make a variant of it).

Configs come from conf/data/<name>.yaml through Hydra's compose API, so ``data.root=...`` style
overrides work as for archbench-train.
"""

from __future__ import annotations

import argparse

from archbench.cli.common import check_group_choices, fail, reporting_errors
from archbench.config import compose, config_groups, to_dict

PROGRAM = "archbench-prepare"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("datasets", nargs="+", help="dataset names (conf/data/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.root=DIR")
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    names = [name for d in args.datasets if "=" not in d for name in d.split(",")]  # a,b as a b
    overrides = [d for d in args.datasets if "=" in d] + args.overrides + extra
    choices = config_groups()["data"]
    for name in names:
        problem = check_group_choices([f"data={name}"], {"data": choices})
        if problem:
            fail(PROGRAM, problem)

    def run() -> None:
        from archbench.data.prepare import prepare, variant_dir

        for name in names:
            data = to_dict(compose([f"data={name}", *overrides]).data)
            out_dir = variant_dir(data)
            meta = prepare(data, out_dir)  # the whole config: download and url reach the source
            print(f"{name}: {meta.splits} {meta.kind} {meta.input_shape} -> {out_dir} ({meta.checksum[:19]}…)")

    reporting_errors(PROGRAM, run)


if __name__ == "__main__":
    main()
