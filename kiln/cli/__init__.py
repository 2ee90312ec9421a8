"""The `kiln` command: the face of every package; nothing imports it."""
