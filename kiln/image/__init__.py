"""Images composed from package sets: spec, lock, resolution, composition, OCI export."""
