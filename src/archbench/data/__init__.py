"""Datasets: one prepare function per dataset, prepared-tensor I/O, one in-memory datamodule."""

from archbench.data.prepare import DATASETS, ensure_prepared, prepare
from archbench.data.store import Meta, load_meta, load_split

__all__ = ["DATASETS", "Meta", "load_meta", "load_split", "ensure_prepared", "prepare"]
