"""Optimizers and learning-rate schedules from plain config dicts (plain so checkpoints stay
``weights_only``-loadable: no partials or classes in hyperparameters)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from types import MethodType
from typing import TYPE_CHECKING, Any

from archbench.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where optimizers are built: validating a config needs none
    import torch

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad", "adadelta")
SCHEDULERS = ("none", "cosine", "warmup_cosine", "step", "multistep", "exponential", "onecycle")
# the keys each one reads: anything else in its config is a typo, refused rather than ignored
OPTIMIZER_KEYS = {"sgd": ("momentum", "nesterov"), "momentum": ("momentum", "nesterov"),
                  "adam": ("betas",), "adamw": ("betas",), "rmsprop": ("momentum",), "adagrad": (),
                  "adadelta": ("rho",)}
COMMON_OPTIMIZER_KEYS = ("name", "lr", "weight_decay", "fused", "compile")
SCHEDULER_KEYS = {"none": (), "cosine": ("min_lr",), "warmup_cosine": ("warmup_steps", "min_lr"),
                  "step": ("step_size", "gamma"), "multistep": ("milestones", "gamma"), "exponential": ("gamma",), "onecycle": ("pct_start",)}


def _refuse_unknown(group: str, name: str, cfg: dict[str, Any], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ConfigError(f"{group} {name}: unknown key(s) {unknown}; valid: {', '.join(valid)}")


def _positive_float(cfg: dict[str, Any], key: str, allow_zero: bool = False) -> float:
    value = cfg.get(key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"optimizer.{key} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = "a finite number ≥ 0" if allow_zero else "a finite number > 0"
        raise ConfigError(f"optimizer.{key} must be {bound}, got {value!r}")
    return number


def validate_optimizer(cfg: dict[str, Any]) -> None:
    if cfg.get("name") not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.get('name')!r}; valid: {', '.join(OPTIMIZERS)}")
    _positive_float(cfg, "lr")
    _positive_float(cfg, "weight_decay", allow_zero=True)
    _refuse_unknown("optimizer", cfg["name"], cfg, COMMON_OPTIMIZER_KEYS + OPTIMIZER_KEYS[cfg["name"]])
    for switch in ("fused", "compile"):
        if not isinstance(cfg.get(switch, False), bool):
            raise ConfigError(f"optimizer.{switch} must be true or false, got {cfg[switch]!r}")


def validate_scheduler(cfg: dict[str, Any], optimizer_cfg: dict[str, Any] | None = None) -> None:
    name = (cfg or {}).get("name", "none")
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {name!r}; valid: {', '.join(SCHEDULERS)}")
    _refuse_unknown("scheduler", name, cfg, ("name", *SCHEDULER_KEYS[name]))
    if name == "onecycle" and (optimizer_cfg or {}).get("compile"):
        raise ConfigError("scheduler onecycle changes the momentum at every step, which would recompile a "
                          "compiled update each time: use another scheduler or optimizer.compile=false")


def _fused_or_default(cls: type[torch.optim.Optimizer], params: list[torch.nn.Parameter], fused: bool,
                      **kwargs: Any) -> torch.optim.Optimizer:
    """``cls`` with torch's fused kernel (one update per parameter group instead of a handful of
    small ops per tensor: ~3× faster steps for Adam on small nets, bench/throughput.py) where the
    parameters' device and dtype allow it; torch's default implementation otherwise."""
    if fused and all(p.is_floating_point() for p in params):
        try:
            return cls(params, fused=True, **kwargs)
        except RuntimeError:  # a device or dtype without a fused kernel
            pass
    return cls(params, **kwargs)


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """``optimizer.fused`` (default true) picks torch's fused kernels where they exist (sgd,
    momentum, adam, adamw); ``optimizer.compile`` (default false) compiles the update instead
    (`_compile_update`). Either way the update rule is the same."""
    validate_optimizer(cfg)
    if not cfg.get("compile"):
        return _build(params, cfg, fused=bool(cfg.get("fused", True)))
    return _compile_update(_build(params, cfg, fused=False))


def _build(params: Iterable[torch.nn.Parameter], cfg: dict[str, Any], fused: bool) -> torch.optim.Optimizer:
    import torch

    name = cfg["name"]
    lr = _positive_float(cfg, "lr")
    wd = _positive_float(cfg, "weight_decay", allow_zero=True)
    params = list(params)
    if name in ("sgd", "momentum"):
        momentum = float(cfg.get("momentum") or (0.9 if name == "momentum" else 0.0))
        return _fused_or_default(torch.optim.SGD, params, fused, lr=lr, weight_decay=wd, momentum=momentum,
                                 nesterov=bool(cfg.get("nesterov", False)) and momentum > 0)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return _fused_or_default(cls, params, fused, lr=lr, weight_decay=wd,
                                 betas=tuple(cfg.get("betas") or (0.9, 0.999)))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=float(cfg.get("momentum") or 0))
    if name == "adadelta":  # Zeiler 2012, as Kim 2014 trains his sentence CNN (rho 0.95)
        rho = _positive_float({"rho": 0.9, **cfg}, "rho", allow_zero=True)
        if rho > 1:
            raise ConfigError(f"optimizer.rho must be in [0, 1], got {cfg.get('rho')!r}")
        return torch.optim.Adadelta(params, lr=lr, weight_decay=wd, rho=rho)
    return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)


def _compile_update(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The update torch.compile'd, as torch's compiled-optimizer recipe: one generated loop per
    tensor instead of a pass per elementwise op, for the optimizers without a fused kernel
    (Adadelta on Kim's cnn: bench/optimizer_step.py). The closure (forward, backward) stays eager;
    the first step pays the compilation (~20 s here), and the rounding may differ from eager's."""
    import torch

    on_cpu = any(p.device.type == "cpu" for group in optimizer.param_groups for p in group["params"])
    if on_cpu:
        _require_cpp_compiler()
    # the earlier optimizers' compiled updates in this process (a multirun's jobs, a sweep's trials)
    # count against dynamo's recompile limit for Optimizer.step, past which it runs eagerly: start
    # clean, as torch.compiler.reset's docs advise between unrelated compilations
    torch.compiler.reset()
    update = torch.compile(optimizer.step)

    def step(self: torch.optim.Optimizer, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        update()
        return loss

    optimizer.step = MethodType(step, optimizer)  # a bound method, as lr schedulers wrap it
    _tensor_learning_rates(optimizer)
    optimizer.register_load_state_dict_post_hook(_tensor_learning_rates)
    return optimizer


def _tensor_learning_rates(optimizer: torch.optim.Optimizer) -> None:
    """Each group's lr in a tensor, which a scheduler fills in place, so a new lr recompiles
    nothing; again after a checkpoint is loaded (an eager run's holds floats)."""
    import torch

    for group in optimizer.param_groups:
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]))


def _require_cpp_compiler() -> None:
    """Inductor writes C++ for CPU tensors: without a compiler the first step would fail deep inside it."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as err:  # inductor's own lookup ($CXX, then g++): whatever it raises means none
        raise ConfigError(f"optimizer.compile=true needs a C++ compiler for CPU training ({err}); "
                          "install g++ or set CXX, or leave optimizer.compile false") from None


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], max_epochs: int,
                    total_steps: int) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` dict, or None for a constant learning rate."""
    import torch

    validate_scheduler(cfg or {})
    name = (cfg or {}).get("name", "none")
    if name == "none":
        return None
    if name == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, max_epochs), eta_min=float(cfg.get("min_lr", 0.0)))
        return {"scheduler": sched, "interval": "epoch"}
    if name == "warmup_cosine":
        # per step, as nanoGPT: linear warm-up to optimizer.lr, then cosine decay to min_lr
        warmup = max(1, min(int(cfg.get("warmup_steps", 100)), total_steps - 1))
        lr = optimizer.param_groups[0]["lr"]
        sched = torch.optim.lr_scheduler.SequentialLR(optimizer, [
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup),
                                                       eta_min=min(lr, float(cfg.get("min_lr", 0.0))))],
            milestones=[warmup])
        return {"scheduler": sched, "interval": "step"}
    if name == "step":
        sched = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=int(cfg.get("step_size", 10)), gamma=float(cfg.get("gamma", 0.1)))
        return {"scheduler": sched, "interval": "epoch"}
    if name == "multistep":  # He et al.'s ResNet schedule: lr × gamma at each milestone epoch
        sched = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[int(m) for m in cfg.get("milestones") or []], gamma=float(cfg.get("gamma", 0.1)))
        return {"scheduler": sched, "interval": "epoch"}
    if name == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=float(cfg.get("gamma", 0.95)))
        return {"scheduler": sched, "interval": "epoch"}
    max_lr = [group["lr"] for group in optimizer.param_groups]
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(1, total_steps),
        pct_start=float(cfg.get("pct_start", 0.25)))
    return {"scheduler": sched, "interval": "step"}


def lightning_optimizers(params, optimizer_cfg: dict[str, Any], scheduler_cfg: dict[str, Any],
                         trainer) -> Any:
    """What a task's ``configure_optimizers`` returns: the optimizer, with its scheduler if any."""
    optimizer = build_optimizer(params, optimizer_cfg)
    scheduler = build_scheduler(optimizer, scheduler_cfg, trainer.max_epochs or 1,
                                int(trainer.estimated_stepping_batches))
    return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
