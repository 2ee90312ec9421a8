"""The content-addressed store on one host."""

from kiln.store.store import NamedFileSet, Store, default_store_path

__all__ = ["NamedFileSet", "Store", "default_store_path"]
