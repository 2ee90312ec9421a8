"""Why two builds of the same inputs differ: the paths that differ, read from the two
archives the workers pushed (the master pulls them from the registry, checked by
digest), and diffoscope's report on them.

The archives are made by recipes nobody on the master trusts: diffoscope reads them
in a bubblewrap of its own (no network, no capability, no view of the farm's
directory or key), bounded in time and in the size of its report.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiln.canonical import Digest
from kiln.errors import KilnError
from kiln.registry.artifact import LAYER_TYPE, Descriptor, VerifiedStream
from kiln.registry.client import RegistryClient
from master.gate import Attempt, read_record

REPORT_LIMIT = 512 * 1024  # characters of diffoscope's report kept
ARCHIVE_LIMIT = 4 << 30  # bytes of one archive the master pulls to compare
DIFFOSCOPE_SECONDS = 300
MAX_PATHS = 50  # differing paths named in the report's summary


@dataclass(frozen=True)
class Divergence:
    """How two builds of a package differ: the paths, and the report."""

    paths: tuple[str, ...]  # the archive paths that differ (every one, sorted)
    report: str  # what a maintainer reads: the summary, then diffoscope's text


def explain(client: RegistryClient, locate: Callable[[str], str], directory: Path,
            compared: tuple[Attempt, ...], summary: str) -> Divergence:
    """The divergence of a refused gate: two outputs compared, or a failure shown.
    `locate` gives a package's repository; a split build's first package that differs
    is the one compared."""
    header = [summary, ""]
    for attempt in compared:
        header.append(f"attempt {attempt.attempt} on {attempt.worker}:"
                      f" {'made ' + attempt.output if attempt.built else 'failed'}"
                      f" ({attempt.build_url or 'no build link'})")
    built = [a for a in compared if a.built]
    if len(built) < 2:
        failed = [a for a in compared if not a.built]
        if failed:
            header += ["", f"the log of the failed build: {failed[0].log_url or 'its build'}"]
        return Divergence((), "\n".join(header) + "\n")
    records = [read_record(directory, attempt.attempt) for attempt in built[:2]]
    index = next((i for i, (one, other) in enumerate(zip(
        records[0].outputs, records[1].outputs, strict=False)) if one.digest != other.digest), 0)
    differing = records[0].outputs[index]
    if index:
        header += ["", f"{differing.name} (split from {records[0].output.name}) differs:"]
    archives = [_pull_archive(client, locate(differing.name), directory, attempt, index)
                for attempt in built[:2]]
    # The FileSet's own manifest (its tree's digest) differs whenever a file does: name
    # the files, and the manifest only when nothing else differs.
    every = differing_paths(*archives)
    paths = tuple(path for path in every if not path.endswith(".fileset.json")) or every
    shown = list(paths[:MAX_PATHS]) + ([f"... and {len(paths) - MAX_PATHS} more"]
                                       if len(paths) > MAX_PATHS else [])
    header += ["", f"{len(paths)} paths differ:", *(f"  {path}" for path in shown), ""]
    return Divergence(paths, "\n".join(header) + "\n" + run_diffoscope(*archives))


def _pull_archive(client: RegistryClient, repository: str, directory: Path,
                  attempt: Attempt, index: int = 0) -> Path:
    """The archive of the attempt's `index`th package (0: the recipe's), pulled once
    into its hand-back directory, checked."""
    record = read_record(directory, attempt.attempt)
    target = directory / str(attempt.attempt) / "archive.tar"
    if target.exists():
        return target
    archive = record.outputs[index].archive
    size = _blob_size(client, repository, archive)
    stream = VerifiedStream(client.open_blob(repository, archive),
                            Descriptor(LAYER_TYPE, archive, size),
                            f"{client.host}/{repository}@{archive}")
    partial = target.with_suffix(".partial")
    with open(partial, "wb") as out:
        while chunk := stream.read(1 << 20):
            out.write(chunk)
    stream.verify()
    partial.rename(target)
    return target


def _blob_size(client: RegistryClient, repository: str, digest: Digest) -> int:
    response = client.request("HEAD", f"/v2/{repository}/blobs/{digest}", kind="HEAD blob",
                              ok=(200,))
    size = int(response.headers.get("Content-Length") or 0)
    if size > ARCHIVE_LIMIT:
        raise KilnError(f"archive {digest} is {size} bytes, more than the {ARCHIVE_LIMIT}"
                        " the master compares", reason="blob-too-large")
    return size


def differing_paths(first: Path, second: Path) -> tuple[str, ...]:
    """The paths whose kind, mode, target or content differ, or that one archive lacks."""
    entries = [_entries(first), _entries(second)]
    return tuple(sorted(path for path in set(entries[0]) | set(entries[1])
                        if entries[0].get(path) != entries[1].get(path)))


def _entries(archive: Path) -> dict[str, tuple[str, int, str]]:
    found: dict[str, tuple[str, int, str]] = {}
    with tarfile.open(archive, "r:") as tar:
        for member in tar:  # read, never extracted
            content = member.linkname
            if member.isfile():
                digest = hashlib.sha256()
                handle = tar.extractfile(member)
                assert handle is not None
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                content = digest.hexdigest()
            found[member.name.removeprefix("./")] = (member.type.decode(), member.mode,
                                                      content)
    return found


def run_diffoscope(first: Path, second: Path) -> str:
    """diffoscope's text report on two archives, in a sandbox; or why there is none."""
    diffoscope = shutil.which("diffoscope")
    bwrap = shutil.which("bwrap")
    if diffoscope is None or bwrap is None:
        missing = "diffoscope" if diffoscope is None else "bubblewrap"
        return (f"(no diffoscope report: {missing} is not installed on the master; apt-get"
                " install diffoscope-minimal bubblewrap)\n")
    command = [bwrap, "--unshare-all", "--cap-drop", "ALL", "--die-with-parent",
               "--new-session", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
               "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
               "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
               "--ro-bind", str(first), "/in/first.tar", "--ro-bind", str(second),
               "/in/second.tar", "--chdir", "/in", "--setenv", "HOME", "/tmp",
               diffoscope, "--text", "-", "--no-progress", "--max-report-size",
               str(REPORT_LIMIT), "--exclude-directory-metadata", "yes",
               "first.tar", "second.tar"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=DIFFOSCOPE_SECONDS,
                                check=False, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    except subprocess.TimeoutExpired:
        return f"(diffoscope gave no report within {DIFFOSCOPE_SECONDS} s)\n"
    text = result.stdout.decode(errors="replace")[:REPORT_LIMIT]
    if result.returncode not in (0, 1):  # 1: differences found
        problem = result.stderr.decode(errors="replace").strip()[-500:]
        return text + f"\n(diffoscope failed with exit {result.returncode}: {problem})\n"
    return text
