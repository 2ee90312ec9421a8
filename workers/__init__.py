"""The hermetic build on a worker host: sources, sandbox, root composition, build."""
