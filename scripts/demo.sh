#!/usr/bin/env bash
# Kiln's main job on embedded defaults, as a user would type it. Called by `./dev demo`.
# Today: a FileSet's round trip through two stores and the stable archive, checked
# bit for bit; a check of the curated recipes against their locked toolchain; and
# GNU hello built hermetically from them, then run. Images and the farm extend it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

state=.state/demo
[[ -e $state ]] && chmod -R u+w "$state" && rm -rf "$state"
mkdir -p "$state/src"
run() { printf '\n$ %s\n' "$*"; "$@"; }

# The tree: Kiln's own source (without byte-code caches), a few dozen files.
tar --exclude=__pycache__ -cf - kiln | tar -xf - -C "$state/src"
run kiln --store "$state/store-a" fileset add "$state/src/kiln" --name kiln.dev/kiln-source --version 0.1.0-1
run kiln --store "$state/store-a" fileset show kiln.dev/kiln-source
run kiln --store "$state/store-a" fileset export kiln.dev/kiln-source@0.1.0-1 -o "$state/a.tar"

# A second store stands in for a second machine: import, export again, compare bytes.
run kiln --store "$state/store-b" fileset import "$state/a.tar"
run kiln --store "$state/store-b" fileset export kiln.dev/kiln-source -o "$state/b.tar"
run cmp "$state/a.tar" "$state/b.tar"
echo "identical archives: $(sha256sum < "$state/a.tar" | cut -c1-64)"

# A FileSet that imports the first one at a path of its own, joined on materialise.
mkdir -p "$state/app/bin"
printf '#!/bin/sh\necho hello from kiln\n' > "$state/app/bin/hello"
chmod +x "$state/app/bin/hello"
run kiln --store "$state/store-b" fileset add "$state/app" --name kiln.dev/app --version 1.0-1 \
  --import src=kiln.dev/kiln-source@0.1.0-1
run kiln --store "$state/store-b" fileset materialize kiln.dev/app "$state/tree"
run "$state/tree/bin/hello"
run ls "$state/tree/src" | head -5

run kiln --store "$state/store-b" store fsck
run kiln --store "$state/store-b" store gc

# The curated recipes and their locked toolchain: every problem at once, or none.
run kiln recipe check recipes

# GNU hello, built hermetically: the locked Debian toolchain (imported and
# verified on first use), Debian's hello source package, the sandbox (bubblewrap).
# A second build of the same inputs is recognised and not run again.
store="$state/store-build"
run kiln --store "$store" build hello --record "$state/hello.record.json"
run kiln --store "$store" build hello
run kiln --store "$store" fileset materialize kiln.dev/hello "$state/hello"
run "$state/hello/usr/bin/hello"
echo "build record: $state/hello.record.json"
echo
echo "demo finished: the stores are under $state"
