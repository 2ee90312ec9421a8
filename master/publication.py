"""A worker's build published, and what the index keeps of it: the publish step's
work. The registry comes first (it is the truth); the index entry is written after,
and may wait for a database that is down (the step retries it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from kiln.canonical import sha256_digest
from kiln.errors import KilnError
from kiln.record import BuildRecord
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


def publish_for_index(farm: FarmConfig, record: BuildRecord, pushed_file: Path, plan_key: str,
                      plan_id: int | None, place: writes.BuildPlace,
                      reproduction: Reproduction | None = None
                      ) -> tuple[Published, IndexEntry]:
    """Publish; then the index entry, with who signed (the bundle just made, verified
    against the farm's key: what the console shows)."""
    published = publish_build(farm, record, pushed_file, plan_key, reproduction)
    try:
        signer = verify_bundle(parse_bundle(published.bundle, "the bundle just signed"),
                               farm_trust(farm), record.output.digest,
                               str(published.reference)).signer
        problem = ""
    except KilnError as exc:  # published all the same: the console says why it does not verify
        signer, problem = "", f"{exc.message} [{exc.reason}]"
    reference = published.reference
    entry = IndexEntry(record, writes.Published(
        f"{reference.host}/{reference.repository}", reference.tag or record.output.version,
        published.manifest, sha256_digest(published.bundle), signer, not problem, problem),
        plan_id, place, farm.builder_id, reproduction)
    return published, entry


def write_entry(farm: FarmConfig, entry: IndexEntry) -> int:
    """Write one publication to the index; raises while the database is unreachable."""
    return writes.record_publication(farm_index(farm.index, farm.path("master")),
                                     entry.record, entry.published, plan_id=entry.plan_id,
                                     place=entry.place, builder=entry.builder,
                                     reproduction=entry.reproduction)


def index_name(farm: FarmConfig) -> str:
    """The index's URL without its password, for messages."""
    return make_url(farm.index).render_as_string(hide_password=True)
