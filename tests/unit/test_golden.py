"""Golden digests and archive bytes: a change that alters one must fail here.

To change a format on purpose, run with KILN_REGENERATE_GOLDEN=1, review the
diff of tests/golden/, and bump the format version the change affects.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from kiln.archive.export import write_archive
from kiln.store import Store
from kiln.store.ingest import ingest_directory
from tests.golden.fixtures import FIXTURES, NAMES
from tests.treespec import write_tree

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
REGENERATE = os.environ.get("KILN_REGENERATE_GOLDEN") == "1"


def _digests(tmp_path: Path, fixture: str) -> tuple[dict[str, str], bytes]:
    store = Store.open(tmp_path / "store")
    root = write_tree(tmp_path / fixture, FIXTURES[fixture], seed=7)
    name, version = NAMES[fixture]
    fileset = ingest_directory(store, root, name=name, version=version).fileset
    out = io.BytesIO()
    info = write_archive(store, fileset, out)
    return {"tree": fileset.tree, "fileset": fileset.digest, "archive": info.digest}, \
        out.getvalue()


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_golden_digests_and_archive_bytes(tmp_path: Path, fixture: str) -> None:
    digests, archive = _digests(tmp_path, fixture)
    golden_json = GOLDEN / "digests.json"
    golden_tar = GOLDEN / f"{fixture}.tar"
    if REGENERATE:
        table = json.loads(golden_json.read_text()) if golden_json.exists() else {}
        table[fixture] = digests
        golden_json.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
        golden_tar.write_bytes(archive)
        pytest.fail("golden files regenerated: review and commit tests/golden/")
    assert digests == json.loads(golden_json.read_text())[fixture]
    assert archive == golden_tar.read_bytes()
