"""Data: sources (one function per dataset or format), the prepare engine, prepared-tensor store
and the in-memory datamodules."""

from archbench.data.prepare import ensure_prepared, prepare
from archbench.data.store import Meta, load_meta, load_split

__all__ = ["Meta", "load_meta", "load_split", "ensure_prepared", "prepare"]
