"""The stable archive: how a FileSet travels between hosts and into OCI layers."""
