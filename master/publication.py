"""A worker's build published, and what the index keeps of it: the publish step's
work. The registry comes first (it is the truth); the index entry is written after,
and may wait for a database that is down (the step retries it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from kiln.canonical import sha256_digest
from kiln.errors import KilnError
from kiln.record import BuildRecord, Output
from master.config import FarmConfig
from master.index import writes
from master.index.database import farm_index
from master.proof import farm_trust
from master.publishing import publish_build
from provenance.bundle import parse_bundle
from provenance.publish import Published
from provenance.statement import Reproduction
from provenance.verify import verify_bundle


@dataclass(frozen=True)
class IndexEntry:
    """Everything the index keeps of one publication, ready to be written (again)."""

    record: BuildRecord
    published: writes.Published
    plan_id: int | None
    place: writes.BuildPlace
    builder: str
    reproduction: Reproduction | None = None
    # A split build's other packages: each published, and indexed as a package too.
    also: tuple[tuple[Output, writes.Published], ...] = ()


def publish_for_index(farm: FarmConfig, record: BuildRecord, pushed_file: Path, plan_key: str,
                      plan_id: int | None, place: writes.BuildPlace,
                      reproduction: Reproduction | None = None
                      ) -> tuple[Published, IndexEntry]:
    """Publish; then the index entry, with who signed (each bundle just made, verified
    against the farm's key: what the console shows). The package's publication is
    returned; a split build's other packages are in the entry."""
    published = publish_build(farm, record, pushed_file, plan_key, reproduction)
    rows = [_published_row(farm, output, made)
            for output, made in zip(record.outputs, published, strict=True)]
    entry = IndexEntry(record, rows[0], plan_id, place, farm.builder_id, reproduction,
                       tuple(zip(record.also, rows[1:], strict=True)))
    return published[0], entry


def _published_row(farm: FarmConfig, output: Output, published: Published
                   ) -> writes.Published:
    try:
        signer = verify_bundle(parse_bundle(published.bundle, "the bundle just signed"),
                               farm_trust(farm), output.digest,
                               str(published.reference)).signer
        problem = ""
    except KilnError as exc:  # published all the same: the console says why it does not verify
        signer, problem = "", f"{exc.message} [{exc.reason}]"
    reference = published.reference
    return writes.Published(
        f"{reference.host}/{reference.repository}", reference.tag or output.version,
        published.manifest, sha256_digest(published.bundle), signer, not problem, problem)


def write_entry(farm: FarmConfig, entry: IndexEntry) -> int:
    """Write one publication to the index (a split build's packages each, its other
    packages first); raises while the database is unreachable."""
    engine = farm_index(farm.index, farm.path("master"))
    for output, published in entry.also:
        writes.record_publication(engine, entry.record, published, plan_id=entry.plan_id,
                                  place=entry.place, builder=entry.builder,
                                  reproduction=entry.reproduction, output=output)
    return writes.record_publication(engine, entry.record, entry.published,
                                     plan_id=entry.plan_id, place=entry.place,
                                     builder=entry.builder, reproduction=entry.reproduction)


def index_name(farm: FarmConfig) -> str:
    """The index's URL without its password, for messages."""
    return make_url(farm.index).render_as_string(hide_password=True)
