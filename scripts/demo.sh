#!/usr/bin/env bash
# Kiln's main job on embedded defaults, as a user would type it. Called by `./dev demo`.
# A FileSet's round trip through two stores and the stable archive, checked bit for
# bit; a check of the curated recipes against their locked toolchain; GNU hello
# built hermetically from them, then run; an image of hello and its runtime closure
# composed by set, run by `kiln run` from the store, pushed to a local registry
# (Debian's docker-registry, started here on loopback), signed, verified and run by
# podman. Then the farm: a Buildbot master and two workers on this host; a
# maintainer pushes a change to a recipe others build with, the farm plans it,
# builds it and its dependants in waves, publishes them signed, and a consumer
# verifies one from an empty store.
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

# An image of hello and its runtime closure (libc6 and what it needs), by set: the
# listing order never matters, each package is one layer, install links one more.
mkdir -p "$state/image"
cat > "$state/image/image.yaml" <<'YAML'
name: kiln.dev/images/hello
version: "1"
packages:
  - kiln.dev/hello
entrypoint: [/usr/bin/hello]
YAML
run kiln --store "$store" image build "$state/image/image.yaml" -o "oci:$state/hello-oci:1"
run kiln --store "$store" image inspect "oci:$state/hello-oci:1"
# Late binding: straight from the store, packages bind-mounted read-only, in the sandbox.
run kiln --store "$store" run "$state/image/image.yaml"

# A local registry on loopback, and a registries.yaml that maps every name to it.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
registry="127.0.0.1:$port"
printf 'version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: "%s"}\n' \
  "$PWD/$state/registry" "$registry" > "$state/registry.yml"
docker-registry serve "$state/registry.yml" > "$state/registry.log" 2>&1 &
registry_pid=$!
podman_run=$(mktemp -d /tmp/kiln-demo-podman.XXXXXX)
trap 'kill $registry_pid 2>/dev/null; rm -rf "$podman_run"' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
printf 'registries:\n  - prefix: ""\n    location: %s/kiln\n' "$registry" > "$state/registries.yaml"
export KILN_REGISTRIES="$PWD/$state/registries.yaml"

# Provenance: a farm key signs the build's record and the Debian packages' imports
# (each statement attached to its package in the registry), then the image.
run kiln key generate "$state/keys" --name farm
signer="file:$state/keys/farm.pem"
run kiln --store "$store" attest "$state/hello.record.json" --signer "$signer"
debian_packages=$(kiln --store "$store" image inspect "oci:$state/hello-oci:1" --json | python3 -c '
import json, sys
packages = json.load(sys.stdin)["packages"]
print(" ".join(p["name"] + "@" + p["version"] for p in packages if p["name"].startswith("debian.org/")))')
for package in $debian_packages; do
  run kiln --store "$store" attest "$package" --signer "$signer"
done
run kiln --store "$store" image build "$state/image/image.yaml" --push "$registry/images/hello:1" \
  --sign "$signer"

# A consumer with an empty store verifies the image and every package in it, then
# runs the admission gate of a trust policy; a policy denying this libc refuses it.
run kiln --store "$state/consumer" verify "$registry/images/hello:1" --key "$state/keys/farm.pub"
cat > "$state/policy.yaml" <<YAML
trust:
  - prefix: ""
    keys: [keys/farm.pub]
builders: [https://kiln.dev/builders/local]
YAML
run kiln --store "$state/consumer" policy check "$registry/images/hello:1" --policy "$state/policy.yaml"
printf 'deny: ["debian.org/bookworm/libc6 (<< 2.37)"]\n' >> "$state/policy.yaml"
if run kiln --store "$state/consumer" policy check "$registry/images/hello:1" \
     --policy "$state/policy.yaml"; then
  echo "the gate should have refused a denied libc6" >&2; exit 1
fi
run podman --root "$PWD/$state/podman" --runroot "$podman_run" --storage-driver vfs \
  --cgroup-manager=cgroupfs --runtime=runc run --rm --network=none --tls-verify=false \
  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$registry/images/hello:1"

# The farm, on this host: a master, its local worker and two build workers, the
# recipe repository (bare, with its post-receive hook), the same local registry.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
seed="$state/farm-seed"
mkdir -p "$seed/base" "$seed/mid" "$seed/top"
cp recipes/kiln.lock "$seed/"
shell='debian.org/bookworm/dash, debian.org/bookworm/coreutils'
cat > "$seed/base/recipe.yaml" <<YAML
package: {name: kiln.dev/demo-base, version: '1'}
build-requires: [$shell]
build: mkdir -p /out/usr/share/demo && echo 'base, first edition' > /out/usr/share/demo/base
YAML
cat > "$seed/mid/recipe.yaml" <<YAML
package: {name: kiln.dev/demo-mid, version: '1'}
build-requires: [$shell, kiln.dev/demo-base]
build: mkdir -p /out/usr/share/demo && cp /usr/share/demo/base /out/usr/share/demo/mid
YAML
cat > "$seed/top/recipe.yaml" <<YAML
package: {name: kiln.dev/demo-top, version: '1'}
build-requires: [$shell, kiln.dev/demo-mid]
build: mkdir -p /out/usr/share/demo && cp /usr/share/demo/mid /out/usr/share/demo/top
YAML
# Directories must be the last part of their package's name.
mv "$seed/base" "$seed/demo-base"; mv "$seed/mid" "$seed/demo-mid"; mv "$seed/top" "$seed/demo-top"
farm="$state/farm"
run kiln farm init "$farm" --workers 2 --registry "$registry" --seed "$seed" \
  --www-port "$(free_port)" --pb-port "$(free_port)"
trap 'kiln farm stop "$farm" >/dev/null 2>&1; kill $registry_pid 2>/dev/null; rm -rf "$podman_run"' EXIT
run kiln farm start "$farm"

# A maintainer clones the recipes, changes the base recipe, and pushes.
git clone -q "$farm/recipes.git" "$state/maintainer"
sed -i 's/first edition/second edition/' "$state/maintainer/recipes/demo-base/recipe.yaml"
git -C "$state/maintainer" -c user.name=maintainer -c user.email=maintainer@kiln.invalid \
  commit -q -am "demo-base: the second edition"
run git -C "$state/maintainer" push -q origin main
commit=$(git -C "$state/maintainer" rev-parse HEAD)
# What the farm plans for it: the base, then what builds with it, wave by wave.
run kiln farm plan --recipes "$state/maintainer/recipes" --from HEAD~1
run kiln farm status "$farm"
run kiln farm wait "$farm" --commit "$commit" --timeout 600
# A consumer with an empty store takes the farm's public key from its console and
# verifies the top of the chain with it.
console=$(kiln farm status "$farm" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["console"])')
printf '\n$ %s\n' "fetch ${console}plugins/wsgi_dashboards/kiln/farm.pub > $state/farm.pub"
python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' \
  "${console}plugins/wsgi_dashboards/kiln/farm.pub" > "$state/farm.pub"
run env KILN_REGISTRIES="$PWD/$farm/registries.yaml" kiln --store "$state/consumer-farm" \
  verify kiln.dev/demo-top@1 --key "$state/farm.pub"
run env KILN_REGISTRIES="$PWD/$farm/registries.yaml" kiln --store "$state/consumer-farm" \
  fileset materialize kiln.dev/demo-top@1 "$state/demo-top"
run cat "$state/demo-top/usr/share/demo/top"
# The farm's index: what it built (worker, inputs, provenance), and the blast radius of
# a libc fix across every image in its registry (the hello image pushed above included).
index="sqlite:///$PWD/$farm/master/index.sqlite"
run kiln query package kiln.dev/demo-top --index "$index"
run kiln query affected debian.org/bookworm/libc6 --below 2.37 --index "$index"
run kiln farm stop "$farm"
echo
echo "demo finished: the stores are under $state"
