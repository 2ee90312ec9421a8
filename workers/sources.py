"""Fetching a recipe's pinned sources into a cache keyed by their digests.

A source is fetched at most once: the cache is keyed by sha256 (files) or by
repository URL and commit (git), and a hit needs no network. Downloads are
written to a temporary file while hashed; a digest that does not match the pin
is refused, naming both digests, and nothing is kept, so nothing unverified is
ever unpacked. A download is cut off at the build's source-size limit.

Local files and repositories are sources only where the host allows them
(kiln.hostconfig): a build must not copy the host's files into a package. The
refusal of a local file never prints its digest, which would let a second
commit pin a secret.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from kiln.errors import InputError
from kiln.hostconfig import HostConfig, file_url_path, host_config, local_source_problem
from kiln.recipes.model import GitSource, PathSource, UrlSource
from kiln.store.layout import mark_used, unique_part

if TYPE_CHECKING:
    from git import Repo

CHUNK = 1 << 20
TIMEOUT = 60


class SourceDigestMismatch(InputError):
    """A fetched source does not match the digest its recipe pins."""

    default_reason = "source-digest-mismatch"


@dataclass(frozen=True)
class FetchedFile:
    """A verified source file in the cache."""

    path: Path
    sha256: str
    uri: str
    name: str  # the file's name in the build's /src


@dataclass(frozen=True)
class FetchedGit:
    """A git mirror in the cache that holds the pinned commit."""

    mirror: Path
    commit: str
    uri: str


class SourceCache:
    """`<root>/sha256/<hex>` for files, `<root>/git/<sha256 of URL>.git` for mirrors."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "git").mkdir(exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)

    def file_path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256

    def mirror_path(self, url: str) -> Path:
        return self.root / "git" / (hashlib.sha256(url.encode()).hexdigest() + ".git")

    def keep(self, stream: BinaryIO, expected: str | None, uri: str, name: str, *,
             max_size: int | None = None, tell_digest: bool = True) -> FetchedFile:
        """Copy `stream` into the cache if its sha256 is `expected`; refuse it otherwise.
        `expected` None keeps whatever it is (`kiln source pin` finding a pin).

        Past `max_size` bytes the copy stops and nothing is kept. `tell_digest`
        False keeps the actual digest out of the refusal (a host file's)."""
        tmp = self.root / "tmp" / f"{os.getpid()}-{unique_part()}"
        digest = hashlib.sha256()
        copied = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := stream.read(CHUNK):
                    copied += len(chunk)
                    if max_size is not None and copied > max_size:
                        raise InputError(f"{uri}: larger than {max_size} bytes (limit"
                                         " source-size); not kept", reason="source-too-large")
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                found = f"sha256 is {actual}" if tell_digest else "the content differs"
                raise SourceDigestMismatch(
                    f"{uri}: {found}, the recipe pins {expected}; not kept")
            os.chmod(tmp, 0o444)
            os.replace(tmp, self.file_path(actual))
        finally:
            tmp.unlink(missing_ok=True)
        return FetchedFile(self.file_path(actual), actual, uri, name)


def fetch_url(cache: SourceCache, source: UrlSource, host: HostConfig | None = None,
              max_size: int | None = None) -> FetchedFile:
    """An https or file: source, from the cache when it is there."""
    host = host or host_config()
    # Before the cache too: what was allowed once may not be any longer.
    _refuse_host_file(source, host)
    name = Path(urllib.parse.urlparse(source.url).path.rstrip("/")).name
    cached = cache.file_path(source.sha256)
    if cached.exists():
        mark_used(cached)
        return FetchedFile(cached, source.sha256, source.url, name)
    return _download(cache, source.url, source.sha256, name,
                     max_size or host.limits.source_size)


def fetch_unpinned(cache: SourceCache, url: str, host: HostConfig | None = None) -> FetchedFile:
    """An https or file: source whose pin is not known yet, kept under its sha256."""
    host = host or host_config()
    _refuse_host_file(UrlSource(url, "", 0), host)
    name = Path(urllib.parse.urlparse(url).path.rstrip("/")).name
    return _download(cache, url, None, name, host.limits.source_size)


def _refuse_host_file(source: UrlSource, host: HostConfig) -> None:
    if source.url.startswith("file:"):
        problem = local_source_problem(source, None, host)
        if problem:
            raise InputError(problem, reason="local-source-not-allowed")


def _download(cache: SourceCache, url: str, expected: str | None, name: str,
              max_size: int) -> FetchedFile:
    """Fetch `url` (file: or https) into the cache, checked against `expected`."""
    if url.startswith("file:"):
        try:
            with open(file_url_path(url), "rb") as stream:
                if not os.path.isfile(f"/proc/self/fd/{stream.fileno()}"):
                    raise InputError(f"{url}: not a regular file", reason="bad-source")
                return cache.keep(stream, expected, url, name, max_size=max_size,
                                  tell_digest=False)
        except OSError as exc:
            raise InputError(f"{url}: cannot read: {exc.strerror}",
                             reason="source-unreachable") from exc
    if not url.startswith("https://"):
        raise InputError(f"{url}: only https:// and file: sources are fetched",
                         reason="bad-source")
    import ssl  # here, not at import: a build that fetches nothing starts sooner
    import urllib.error
    import urllib.request

    # The system's CA store; SSL_CERT_FILE points it at a private CA.
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_size:
                raise InputError(f"{url}: the server announces {length} bytes, more"
                                 f" than {max_size} (limit source-size)",
                                 reason="source-too-large")
            return cache.keep(response, expected, url, name, max_size=max_size)
    except urllib.error.HTTPError as exc:
        # A 404 stays a 404; a server error or a throttle may pass.
        raise InputError(f"{url}: the server answered {exc.code} {exc.reason}",
                         reason="source-unreachable",
                         temporary=exc.code >= 500 or exc.code == 429) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"{url}: cannot fetch: {reason}",
                         reason="source-unreachable", temporary=True) from exc


def fetch_path(recipe_dir: Path, source: PathSource) -> FetchedFile:
    """A file in the recipe's own directory; a symlink may not lead out of it."""
    base = recipe_dir.resolve()
    path = (recipe_dir / source.path).resolve()
    if not path.is_relative_to(base):
        raise InputError(f"path source {source.path!r} leads out of {recipe_dir}",
                         reason="bad-source")
    if not path.is_file():
        raise InputError(f"path source {source.path!r} is not a file in {recipe_dir}",
                         reason="missing-source")
    with open(path, "rb") as stream:
        sha = hashlib.file_digest(stream, "sha256").hexdigest()
    return FetchedFile(path, sha, f"path:{source.path}", Path(source.path).name)


def fetch_git(cache: SourceCache, source: GitSource, recipe_repository: Path | None = None,
              host: HostConfig | None = None) -> FetchedGit:
    """A mirror of the repository holding the pinned commit; fetched only if it lacks it."""
    import git

    problem = local_source_problem(source, recipe_repository, host or host_config())
    if problem:
        raise InputError(problem, reason="local-source-not-allowed")
    if recipe_repository is not None:
        source = source.resolved(recipe_repository)
    mirror = cache.mirror_path(source.url)
    try:
        if not mirror.exists():
            scratch = cache.root / "tmp" / f"{os.getpid()}-{unique_part()}.git"
            try:
                git.Repo.clone_from(source.url, scratch, mirror=True)
                os.rename(scratch, mirror)
            except OSError:
                if not mirror.exists():
                    raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        repo = git.Repo(mirror)
        if not _has_commit(repo, source.commit):
            repo.git.fetch("origin", "+refs/*:refs/*", "--prune")
    except git.GitCommandError as exc:
        raise InputError(f"{source.url}: git failed: {exc.stderr.strip() or exc}",
                         reason="source-unreachable", temporary=True) from exc
    if not _has_commit(repo, source.commit):
        raise SourceDigestMismatch(f"{source.url}: has no commit {source.commit}",
                                   reason="source-commit-missing")
    mark_used(mirror)
    return FetchedGit(mirror, source.commit, f"git+{source.url}")


def _has_commit(repo: Repo, commit: str) -> bool:
    import git

    try:
        return repo.commit(commit).hexsha == commit
    except (ValueError, git.BadName):
        return False
