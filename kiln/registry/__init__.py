"""Kiln and OCI distribution registries: references, configuration, the client,
FileSets as artifacts, and referrers."""
