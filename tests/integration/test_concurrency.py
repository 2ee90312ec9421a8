"""Several processes ingest overlapping trees while gc runs beside them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from kiln.store import Store
from tests.conftest import REPO, run_kiln_process
from tests.treespec import File, read_tree, with_parents, write_tree

WORKERS = 4
ROUNDS = 6

WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from kiln.store import Store
    from kiln.store.ingest import ingest_directory
    store_dir, worker, rounds, trees = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    for round in range(rounds):
        store = Store.open(store_dir)  # a fresh view each round, as separate commands have
        ingest_directory(store, Path(trees) / f"w{worker}-r{round}",
                         name=f"kiln.dev/worker{worker}", version="1")
""")

GC_LOOP = textwrap.dedent("""
    import sys
    from pathlib import Path
    from kiln.store import Store
    from kiln.store.gc import collect_garbage
    stop = Path(sys.argv[2])
    runs = 0
    while not stop.exists() or runs < 3:
        collect_garbage(Store.open(sys.argv[1]))
        runs += 1
    print(runs)
""")


def spec(worker: int, round_: int) -> dict[str, File]:
    # Every tree shares files with every other; each also has its own.
    return {
        "common/license": File(b"shared by all\n"),
        "common/big": File(b"B" * 300_000),
        f"round/{round_}": File(f"round {round_}\n".encode()),
        "mine": File(f"worker {worker} round {round_}\n".encode(), executable=True),
    }


def test_parallel_ingest_with_gc_running(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    Store.open(store_dir)
    trees = tmp_path / "trees"
    for worker in range(WORKERS):
        for round_ in range(ROUNDS):
            write_tree(trees / f"w{worker}-r{round_}", spec(worker, round_))
    stop = tmp_path / "stop"
    env = {"PYTHONPATH": str(REPO)}
    gc = subprocess.Popen([sys.executable, "-c", GC_LOOP, store_dir, stop],
                          stdout=subprocess.PIPE, text=True, env=env)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, store_dir, str(worker),
                                 str(ROUNDS), trees], env=env, stderr=subprocess.PIPE,
                                text=True)
               for worker in range(WORKERS)]
    for process in workers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    stop.touch()
    out, _ = gc.communicate(timeout=300)
    assert gc.returncode == 0
    assert int(out) >= 3

    store = Store.open(store_dir)
    named = {item.name: item.digest for item in store.named()}
    assert sorted(named) == [f"kiln.dev/worker{w}" for w in range(WORKERS)]
    for worker in range(WORKERS):
        out_dir = tmp_path / f"out{worker}"
        assert run_kiln_process(store_dir, "fileset", "materialize",
                                f"kiln.dev/worker{worker}@1", out_dir).returncode == 0
        assert read_tree(out_dir) == with_parents(spec(worker, ROUNDS - 1))

    fsck = run_kiln_process(store_dir, "store", "fsck", "--json")
    assert fsck.returncode == 0
    assert json.loads(fsck.stdout)["clean"]
    # One object per distinct content: after a final gc, exactly what the live trees use.
    run_kiln_process(store_dir, "store", "gc")
    objects = [p for d in store.layout.objects.iterdir() for p in d.iterdir()]
    distinct = {(f.content, f.executable) for w in range(WORKERS)
                for f in spec(w, ROUNDS - 1).values()}
    assert len(objects) == len(distinct)
