"""Datasets kept as one folder per class (images, texts, WAVs): which files and folders count, and
the ``train/`` (``val/``, ``test/``) layout of given splits."""

from __future__ import annotations

from pathlib import Path

from archbench.errors import DataError


def visible_files(folder) -> list:
    """Every file below ``folder``, sub-folders included, whose path inside it has no hidden
    (``.``-prefixed) part: a Mac's ``._*`` copies and ``.DS_Store``, ``.thumbnails/`` are not data."""
    return [p for p in Path(folder).rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def files_with(folder, suffixes) -> list:
    """``visible_files`` of ``folder`` whose suffix (any case) is one of ``suffixes``, sorted by path."""
    return sorted(p for p in visible_files(folder) if p.suffix.lower() in suffixes)


def class_folders(root) -> list:
    """The class sub-folders of ``root``, sorted: visible ones, not ``__MACOSX`` (a Mac's zip's
    resource forks)."""
    return sorted(p for p in Path(root).iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def split_folders(root) -> dict:
    """``{"train": dir, "val": dir, "test": dir}`` (the ones there) when ``root``'s sub-folders are
    all split names, ``train/`` among them (``val/``, ``valid/`` or ``validation/``; ``test/``; any
    case), each holding one folder per class; ``{"train": root}`` when they are the class folders."""
    named = {p.name.lower(): p for p in class_folders(root)}
    if "train" not in named or not set(named) <= set(SPLIT_FOLDERS):
        return {"train": Path(root)}
    validation = [named[n].name for n in named if SPLIT_FOLDERS[n] == "val"]
    if len(validation) > 1:
        raise DataError(f"{root} has {' and '.join(validation)}: one validation folder, please")
    return {SPLIT_FOLDERS[n]: p for n, p in named.items()}


def check_given(folder, count: int, kind: str, classes: list[str]) -> None:
    """A given val/ or test/ tree with nothing in it: one line (it would be an empty split)."""
    if count == 0:
        raise DataError(f"{folder} holds no {kind} in its class folders ({', '.join(classes)})")


def check_split_classes(splits: dict, classes: list[str]) -> None:
    """A class folder in val/ or test/ that train/ lacks: its examples could never be predicted."""
    for split, folder in splits.items():
        extra = [] if split == "train" else [p.name for p in class_folders(folder) if p.name not in classes]
        if extra:
            raise DataError(f"{folder} has class folder(s) {', '.join(extra)} that {splits['train']} lacks "
                            f"(classes: {', '.join(classes)})")


def other_files(folder, kept: list) -> str:
    """The files in a class folder besides those read (``kept``), by suffix (``3 .heic, 1 .txt``),
    or "": what a warning or an error says was skipped."""
    from collections import Counter

    kept = set(kept)
    kinds = Counter(p.suffix.lower() or "(no suffix)" for p in visible_files(folder) if p not in kept)
    return ", ".join(f"{n} {suffix}" for suffix, n in sorted(kinds.items()))
