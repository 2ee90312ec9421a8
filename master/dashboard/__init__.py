"""Kiln's dashboard in the farm's console: packages, provenance, plans and waves."""
