"""The prepare engine: source → split → normalise → ``data/prepared/<name>[-<variant>]/``.

Sources whose raw examples need encoding rather than normalising (texts → word ids, sentence
pairs → two vocabularies) name their own preparer (``Source.preparer``): it receives the seeded
splits and returns the arrays, its ``meta.json`` extras and side files — a new data kind adds a
preparer beside its source, not a branch here.

A dataset's source is the function its ``conf/data/<name>.yaml`` names under ``source:``. The
engine carves validation (and, without an official test split, test) out of the train pool with a
fixed seed — stratified for classification —, normalises with training statistics only and writes
``{train,val,test}.pt`` plus ``meta.json``. The dataset's default config prepares into
``<name>/`` (the DVC prepare stage's output); any variant that changes the tensors prepares into
``<name>-<hash of its prepare config>/``, so runs on different variants never share a directory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from archbench.config import validate_split_fractions
from archbench.data.sources import Source
from archbench.data.store import Meta, write_prepared
from archbench.errors import ConfigError, DataError

# data config keys the datamodules and tasks read; they never change the prepared tensors
LOADER_KEYS = ("name", "dir", "batch_size", "eval_batch_size", "layout", "verify_checksum",
               "augment_shift", "augment_crop", "augment_flip", "augment_noise_snr", "augment_time_mask",
               "augment_freq_mask", "augment_masks", "block_size", "steps_per_epoch", "sample_every_n_epochs",
               "sample_length", "download", "url", "train_fraction", "bucket_batches",
               "word_dropout")


def resolve_source(cfg: dict[str, Any]) -> Callable[[dict[str, Any]], Source]:
    """The function named by ``source:`` (a dotted path, e.g. archbench.data.sources.sklearn_tables.digits)."""
    from hydra.utils import get_method

    target = cfg.get("source")
    if not target:
        raise ConfigError(f"data config {cfg.get('name')!r} names no source function (source: module.function)")
    try:
        return get_method(str(target))
    except Exception as err:  # noqa: BLE001 - Hydra raises several types for a bad path
        raise ConfigError(f"data.source={target}: no such function ({err})") from None


def _split(y: np.ndarray, fraction: float, seed: int, stratify: bool,
           names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    try:
        keep, held = train_test_split(index, test_size=fraction, random_state=seed,
                                      stratify=y if stratify else None)
    except ValueError as err:  # e.g. a class with one example cannot be stratified
        said = _too_rare(y, names or []) if stratify else ""
        raise ConfigError(f"cannot split {len(y)} examples ({fraction:.0%} held out): {said or err}") from None
    return np.sort(keep), np.sort(held)


def _too_rare(y: np.ndarray, names: list[str]) -> str:
    """The classes too rare for a stratified split, by name (sklearn's message gives their ids)."""
    counts = np.bincount(y, minlength=len(names))
    rare = [f"{names[c] if c < len(names) else c!r} ({counts[c]})" for c in np.flatnonzero((counts > 0) & (counts < 2))]
    if not rare:
        return ""
    shown = ", ".join(rare[:5]) + (f" and {len(rare) - 5} more" if len(rare) > 5 else "")
    hint = " (mostly one-off classes: a measured quantity? data.task=regression)" if len(rare) > len(counts) / 2 else ""
    return (f"too few examples of class(es) {shown}: a stratified split needs at least 2 of each; "
            f"remove their rows or add examples{hint}")


def _fold(y: np.ndarray, folds: int, fold: int, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``fold`` of a seeded (stratified) k-fold partition of the training pool as validation:
    cross-validation for data too small for one fixed validation split (the test split is untouched)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2 or not 0 <= fold < folds:
        raise ConfigError(f"data.val_fold must be in 0..{folds - 1} with data.cv_folds ≥ 2, got fold {fold} of {folds}")
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    try:
        train_idx, val_idx = list(splitter.split(np.zeros(len(y)), y if stratify else None))[fold]
    except ValueError as err:  # e.g. fewer examples of a class than folds
        raise ConfigError(f"cannot cut {len(y)} examples into {folds} folds: {err}") from None
    return np.sort(train_idx), np.sort(val_idx)


NORMALIZATIONS = ("global", "per_channel")


def _normalization(kind: str, x: np.ndarray, per: str = "global") -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Training statistics: per feature for tables, per channel for colour images that ask for it
    (``data.normalize: per_channel``), else one mean and std."""
    if kind == "tabular":  # gaps (data.missing=mean) left out: they become 0, the training mean
        gaps = np.isnan(x).any()
        with warnings.catch_warnings():  # a column with no value in training: "mean of empty slice"
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = (np.nanmean(x, axis=0), np.nanstd(x, axis=0)) if gaps else (x.mean(axis=0), x.std(axis=0))
        mean, std = np.nan_to_num(mean, nan=0.0), np.nan_to_num(std, nan=1.0)  # a column with no value
        std = np.where(std > 0, std, 1.0)
        return {"mean": mean.tolist(), "std": std.tolist(), "per": "feature"}, mean, std
    if per not in NORMALIZATIONS:
        raise ConfigError(f"unknown data.normalize {per!r}; valid: {', '.join(NORMALIZATIONS)}")
    if per == "per_channel" and kind == "image":
        axes = (0, *range(2, x.ndim))
        mean, std = x.mean(axis=axes, keepdims=True)[0], x.std(axis=axes, keepdims=True)[0]
        std = np.where(std > 0, std, 1.0)
        return ({"mean": mean.ravel().tolist(), "std": std.ravel().tolist(), "per": "channel"},
                mean.astype(np.float32), std.astype(np.float32))
    mean, std = float(x.mean()), float(x.std()) or 1.0
    return {"mean": mean, "std": std, "per": "global"}, np.float32(mean), np.float32(std)


def normalise(x: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """``x`` normalised with the training statistics ``_normalization`` recorded (meta.json's
    ``normalization``): one mean and std, one per feature of a table row, or one per channel of
    (N, C, H, W) images; the same float32 arithmetic as the prepared splits, so new inputs read
    as the training ones were."""
    mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    if stats.get("per") == "channel":
        mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    return ((x - mean) / std).astype(np.float32)


def _text_splits(cfg: dict[str, Any], source: Source) -> dict[str, dict[str, np.ndarray]]:
    """Contiguous train/val/test split of the character ids (default 90/5/5)."""
    ids = source.x_pool
    n_train = int(len(ids) * (1 - float(cfg.get("val_fraction", 0.05)) - float(cfg.get("test_fraction", 0.05))))
    n_val = int(len(ids) * float(cfg.get("val_fraction", 0.05)))
    return {"train": {"x": ids[:n_train]}, "val": {"x": ids[n_train : n_train + n_val]},
            "test": {"x": ids[n_train + n_val :]}}


def _split_indices(cfg: dict[str, Any], source: Source, seed: int):
    """(pool x, pool y, train indices, validation indices, test x, test y): the test split is the
    source's own or a seeded held-out share; validation a share or a cross-validation fold."""
    stratify = source.task == "classification"
    x_pool, y_pool = source.x_pool, source.y_pool
    if source.x_test is None:
        keep, held = _split(y_pool, float(cfg.get("test_fraction", 0.2)), seed, stratify, source.class_names)
        x_test, y_test, x_pool, y_pool = x_pool[held], y_pool[held], x_pool[keep], y_pool[keep]
    else:
        x_test, y_test = source.x_test, source.y_test
    if source.x_val is not None and cfg.get("val_fold") is not None:
        raise ConfigError(f"data.val_fold cuts validation folds from the training pool, but {cfg['name']} "
                          f"comes with its own validation split (a given val/ tree, say): drop data.val_fold")
    if source.x_val is not None:  # the dataset's own validation split, appended to the pool
        n_train = len(y_pool)
        x_pool, y_pool = np.concatenate([x_pool, source.x_val]), np.concatenate([y_pool, source.y_val])
        train_idx, val_idx = np.arange(n_train), np.arange(n_train, len(y_pool))
    elif cfg.get("val_fold") is None:
        train_idx, val_idx = _split(y_pool, float(cfg.get("val_fraction", 0.1)), seed, stratify, source.class_names)
    else:
        train_idx, val_idx = _fold(y_pool, int(cfg.get("cv_folds", 5)), int(cfg["val_fold"]), seed, stratify)
    return x_pool, y_pool, train_idx, val_idx, x_test, y_test


def _example_splits(cfg: dict[str, Any], source: Source, seed: int):
    """Seeded (stratified for classes) splits, inputs normalised with training statistics."""
    x_pool, y_pool, train_idx, val_idx, x_test, y_test = _split_indices(cfg, source, seed)
    x_train = x_pool[train_idx]
    stats, mean, std = _normalization(source.kind, x_train, str(cfg.get("normalize", "global")))
    ys = {"train": y_pool[train_idx], "val": y_pool[val_idx], "test": y_test}
    target: dict[str, Any] = {}
    if source.task == "regression":  # standardised targets; tasks report in the original units
        y_mean, y_std = float(ys["train"].mean()), float(ys["train"].std()) or 1.0
        target = {"mean": y_mean, "std": y_std}
        ys = {k: ((v - y_mean) / y_std).astype(np.float32) for k, v in ys.items()}
    xs = {"train": x_train, "val": x_pool[val_idx], "test": x_test}
    arrays = {split: {"x": _gaps_to_mean((xs[split] - mean) / std), "y": ys[split]} for split in xs}
    return arrays, stats, target


def _gaps_to_mean(z: np.ndarray) -> np.ndarray:
    """Normalised inputs with their gaps (NaN: ``data.missing=mean``) at 0, the training mean;
    infinities stay (they are an error training reports)."""
    return np.where(np.isnan(z), np.float32(0), z).astype(np.float32)


def split_pool(cfg: dict[str, Any], source: Source, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (x, y)}`` for train, val and test, unnormalised: what a source's own preparer
    (``Source.preparer``) encodes."""
    x_pool, y_pool, train_idx, val_idx, x_test, y_test = _split_indices(cfg, source, seed)
    return {"train": (x_pool[train_idx], y_pool[train_idx]), "val": (x_pool[val_idx], y_pool[val_idx]),
            "test": (x_test, y_test)}


def split_overlap(arrays: dict[str, dict[str, np.ndarray]]) -> dict[str, int]:
    """How many validation and test inputs are exact copies of a training input (a photo saved
    twice, a repeated CSV row), per split, where any are."""
    def rows(split: str) -> list[bytes]:
        x = np.ascontiguousarray(arrays[split]["x"])
        return [row.tobytes() for row in x.reshape(len(x), -1)]

    inputs = [split.get("x") for split in arrays.values()]
    if not all(isinstance(x, np.ndarray) and x.ndim >= 1 and x.shape[1:] == inputs[0].shape[1:] for x in inputs):
        return {}  # inputs that are not one array of like rows per split (e.g. rendered strings)
    seen = set(rows("train"))
    counts = {split: sum(row in seen for row in rows(split)) for split in ("val", "test") if split in arrays}
    return {split: n for split, n in counts.items() if n}


# config keys that name your own files (a table, a folder of images, sentence pairs, a corpus)
SOURCE_KEYS = ("path", "root", "tsv", "source_file", "target_file")


def source_stamp(cfg: dict[str, Any]) -> dict[str, str]:
    """Per key of ``SOURCE_KEYS`` the config names, a digest of its files' paths, sizes and
    modification times (a folder: every entry below it, so a photo moved to another class folder
    counts): what tells that a file changed since it was prepared. {} for built-in data and for
    files pinned by MD5 (checked when they are read)."""
    if cfg.get("md5"):
        return {}
    stamp = {}
    for key in SOURCE_KEYS:
        if not cfg.get(key):
            continue
        root = Path(str(cfg[key])).expanduser()
        entries = sorted(root.rglob("*")) if root.is_dir() else [root] if root.exists() else []
        listing = []
        for entry in entries:
            with contextlib.suppress(OSError):  # gone meanwhile: the digest differs anyway
                info = entry.stat()
                listing.append(f"{entry.relative_to(root) if entry != root else '.'}\t{info.st_size}\t{info.st_mtime_ns}")
        stamp[key] = hashlib.sha256("\n".join(listing).encode()).hexdigest()
    return stamp


def _stamp_file(out_dir: Path) -> Path:
    """Beside the prepared folder, not in it: the folder's bytes stay the same on every machine."""
    return out_dir.with_name(f".{out_dir.name}.sources.json")


def _sources_changed(cfg: dict[str, Any], out_dir: Path) -> bool:
    """Whether a file the prepared data was read from changed since (False when not recorded)."""
    recorded = _stamp_file(out_dir)
    if not recorded.is_file():
        return False
    try:
        return json.loads(recorded.read_text()) != source_stamp(cfg)
    except ValueError:
        return True


def prepare(cfg: dict[str, Any], out_dir: str | Path) -> Meta:
    """Build ``out_dir`` from the dataset's source; deterministic for a given config."""
    validate_split_fractions(cfg)
    stamp = source_stamp(cfg)  # before reading: a file changed while it is read is redone next time
    meta = _prepare(cfg, Path(out_dir))
    if stamp:
        _stamp_file(Path(out_dir)).write_text(json.dumps(stamp))
    return meta


def _prepare(cfg: dict[str, Any], out_dir: Path) -> Meta:
    seed = int(cfg.get("seed", 42))
    source = resolve_source(cfg)(cfg)
    files, extra, input_shape = {}, {}, source.input_shape
    if source.kind == "text":
        arrays, stats, target = _text_splits(cfg, source), {}, {}
    elif source.preparer:  # e.g. texts → word ids: the source's own encoder of the seeded splits
        from hydra.utils import get_method

        arrays, extra, files = get_method(source.preparer)(cfg, source, split_pool(cfg, source, seed))
        # a preparer that computes features knows their shape and statistics
        stats, target = extra.pop("normalization", {}), {}
        input_shape = extra.pop("input_shape", input_shape)
    else:
        arrays, stats, target = _example_splits(cfg, source, seed)
    overlap = {} if source.kind == "text" else split_overlap(arrays)
    if overlap:
        print(f"archbench: warning: {cfg['name']}: " + ", ".join(
            f"{n} of {len(arrays[split]['x'])} {split} inputs" for split, n in overlap.items())
            + " are identical to training inputs; scores on them measure memory, not "
            "generalisation (in your own data: remove the duplicates)", flush=True)
    return write_prepared(Path(out_dir), arrays, {
        "name": str(cfg["name"]), "kind": source.kind, "input_shape": input_shape,
        "num_classes": len(source.class_names), "class_names": source.class_names,
        "normalization": stats, "seed": seed,
        "val_fraction": float(cfg.get("val_fraction", 0.05 if source.kind == "text" else 0.1)),
        "source": source.info, "task": source.task, "target": target,
        "extra": {"config": json.loads(json.dumps(prepare_config(cfg))), **extra}}, files)


def prepare_config(data_cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved data config that changes the prepared tensors (plus its name)."""
    return {k: v for k, v in data_cfg.items() if k not in LOADER_KEYS or k == "name"}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What tells prepared variants apart: the prepare config without its ``location_keys``
    (e.g. ``root``) when the config pins its files by checksum (``md5``) — the same files read
    from another folder (a shared dataset directory) are the same data, not a variant."""
    pinned = set(config.get("location_keys") or []) if config.get("md5") else set()
    return {k: v for k, v in config.items() if k not in pinned}


def _config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def default_prepare_config(name: str) -> dict[str, Any] | None:
    """The prepare config of ``conf/data/<name>.yaml`` as it stands (None for a non-built-in name)."""
    from archbench.paths import conf_dir

    known = _default_prepare_json(str(conf_dir()), name)
    return None if known is None else json.loads(known)


@functools.lru_cache(maxsize=64)
def _default_prepare_json(conf: str, name: str) -> str | None:
    """One Hydra composition per (conf dir, dataset) and process: every seed of a multirun asks."""
    from archbench.config import compose, config_groups, to_dict

    if name not in config_groups(Path(conf)).get("data", []):
        return None
    return json.dumps(prepare_config(to_dict(compose([f"data={name}"]).data)))


def _prepared_from(data_dir: Path, wanted: dict[str, Any]) -> Meta | None:
    """``data_dir``'s metadata when it holds data prepared from a config of identity ``wanted``,
    else None (an unreadable ``meta.json`` raises ``DataError``)."""
    from archbench.data.store import load_meta

    if not (data_dir / "meta.json").is_file():
        return None
    meta = load_meta(data_dir)
    return meta if identity(meta.extra.get("config") or {}) == wanted else None


def variant_dir(data_cfg: dict[str, Any]) -> Path:
    """``<dir>`` for the dataset's default config (or the config ``<dir>`` already holds: same
    config, same data), ``<dir>-<hash>`` for any variant of it."""
    wanted = identity(json.loads(json.dumps(prepare_config(data_cfg))))
    base = Path(data_cfg["dir"])
    try:
        if _prepared_from(base, wanted) is not None:  # what <dir> holds already: no composition needed
            return base
    except DataError:
        pass  # unreadable: the default config decides (ensure_prepared says what is wrong)
    default = default_prepare_config(str(data_cfg["name"]))
    if default is not None and wanted == identity(default):
        return base
    return base.with_name(f"{base.name}-{_config_hash(wanted)}")


def ensure_prepared(data_cfg: dict[str, Any]) -> tuple[Meta, Path]:
    """Metadata and directory of ``data_cfg``'s prepared data; prepares (under a lock, written
    atomically) when missing or prepared from a different config."""
    from filelock import FileLock

    data_dir = variant_dir(data_cfg)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(data_dir.with_name(f".{data_dir.name}.lock"))):
        meta = _prepared_from(data_dir, identity(json.loads(json.dumps(prepare_config(data_cfg)))))
        if meta is not None and _sources_changed(data_cfg, data_dir):
            print(f"archbench: {data_cfg['name']}: {meta.source.get('origin') or 'its files'} changed since it was "
                  f"prepared: preparing it again", flush=True)
            meta = None
        if meta is None:
            meta = prepare(data_cfg, data_dir)
        return meta, data_dir
