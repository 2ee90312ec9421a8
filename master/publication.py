"""A worker's build published and written to the index: the publish step's work."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from kiln.errors import KilnError
from kiln.record import BuildRecord
from master.config import FarmConfig
from master.index.database import write_index
from master.index.writes import BuildPlace, record_publication
from master.proof import farm_trust
from master.publishing import publish_build
from provenance.bundle import parse_bundle
from provenance.publish import Published
from provenance.verify import verify_bundle


def publish_and_index(farm: FarmConfig, record_file: Path, pushed_file: Path, plan_key: str,
                      plan_id: int | None, place: BuildPlace) -> Published:
    """Publish, then write the publication to the index with who signed it (its own
    bundle verified against the farm's key: what the console shows)."""
    published = publish_build(farm, record_file, pushed_file, plan_key)
    record = BuildRecord.from_bytes(record_file.read_bytes(), str(record_file))
    try:
        signer = verify_bundle(parse_bundle(published.bundle, "the bundle just signed"),
                               farm_trust(farm), record.output.digest,
                               str(published.reference)).signer
        problem = ""
    except KilnError as exc:  # published all the same: the console says why it does not verify
        signer, problem = "", f"{exc.message} [{exc.reason}]"
    write_index(farm, _record, record, str(published.reference), published.manifest,
                signer, problem, plan_id, place)
    return published


def _record(engine: Engine, record: BuildRecord, reference: str, manifest: str, signer: str,
            problem: str, plan_id: int | None, place: BuildPlace) -> int:
    return record_publication(engine, record, reference=reference, manifest=manifest,
                              signer=signer, plan_id=plan_id, place=place,
                              verified=not problem, problem=problem)
