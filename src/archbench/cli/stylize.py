"""``archbench-stylize [overrides]``: neural style transfer (Gatys et al. 2016) of one image in the
style of another, configured by conf/stylize.yaml through Hydra's compose API, e.g.
``archbench-stylize content=photo.jpg style=painting.jpg features=vgg19 steps=300``. Writes the
stylised PNG and its loss curve and logs both as an MLflow run (experiment archbench-stylize)."""

from __future__ import annotations

import sys

from archbench.cli.common import config_error_line, fail, reporting_errors

PROGRAM = "archbench-stylize"


def compose_stylize(overrides: list[str]):
    """conf/stylize.yaml with ``overrides`` (Hydra syntax)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from archbench.config import register_resolvers
    from archbench.paths import conf_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        try:
            return compose("stylize", overrides=overrides)
        except (HydraException, OmegaConfBaseException) as err:
            fail(PROGRAM, config_error_line(err, lambda: compose("stylize")))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return
    flags = [a for a in args if a.startswith("-")]
    if flags:
        fail(PROGRAM, f"unknown option {flags[0]}; give Hydra overrides such as content=FILE style=FILE")
    cfg = compose_stylize(args)

    def run() -> None:
        from archbench.stylize import stylize

        out = stylize(cfg)
        print(f"{PROGRAM}: {cfg.features} features, {int(out['evaluations'])} L-BFGS evaluations in "
              f"{out['seconds']:.1f} s\n"
              f"  style loss     {out['style_loss_start']:.4g} -> {out['style_loss_end']:.4g} "
              f"(÷{out['style_loss_fall']:.1f})\n"
              f"  content loss   {out['content_loss_start']:.4g} -> {out['content_loss_end']:.4g} "
              f"(the style image's own: {out['content_loss_of_style_image']:.4g})\n"
              f"  image          {out['image']}  (loss curve {out['curve']})\n"
              f"  MLflow run     {out['run_id']}  (store {cfg.tracking_uri})")

    reporting_errors(PROGRAM, run)


if __name__ == "__main__":
    main()
