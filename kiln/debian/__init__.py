"""Debian binary packages as Package FileSets: apt's records, .deb files, imports."""
