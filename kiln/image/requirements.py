"""What running an image's packages asks of a host (the kernel, capabilities), and the
PATH an image runs with: shared by image composition and `kiln run`, which must not
pay for importing the first to do the second."""

from __future__ import annotations

from typing import Any

from kiln.fileset import FileSet
from kiln.package import PackageMetadata

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def aggregate_requirements(packages: list[FileSet]) -> dict[str, Any]:
    """What a host must offer to run all of `packages`."""
    kernels: list[str] = []
    capabilities: set[str] = set()
    for fileset in packages:
        if isinstance(fileset.metadata, PackageMetadata):
            if fileset.metadata.requirements.kernel:
                kernels.append(fileset.metadata.requirements.kernel)
            capabilities.update(fileset.metadata.requirements.capabilities)
    kernel = max(kernels, key=kernel_key) if kernels else None
    return {"kernel": kernel, "capabilities": sorted(capabilities)}


def kernel_key(version: str) -> tuple[int, ...]:
    """`5.10.0-21-amd64` -> (5, 10, 0): the numeric release, compared part by part."""
    numbers = []
    for part in version.split("-", maxsplit=1)[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) or "0"
        numbers.append(int(digits))
    return tuple(numbers)
