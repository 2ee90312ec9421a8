"""`debian-patches: true`: a Debian source package unpacked in the build as
`dpkg-source -x` would, Debian's quilt series applied.

The unpacking runs inside the sandbox, at the start of the build script, never on
the host: a source package's tarballs and patches are as hostile as any recipe. The
script's fixed text is a build input (`kiln:debian-patches` among the record's
sources, by its sha256), so a change to how Kiln unpacks is another build key; what
varies, the file names, comes from the .dsc, whose sha256 is pinned.

Formats: 3.0 (quilt) (orig tarball, orig-COMPONENT tarballs, debian tarball, the
series in debian/patches/series), 3.0 (native) and 1.0 (orig tarball and .diff.gz,
or native). The build root needs tar, the tarballs' decompressors, sed and patch.
"""

from __future__ import annotations

import hashlib
import re

from kiln.errors import InputError
from kiln.recipes.model import DebianSource

DEBIAN_PATCHES_URI = "kiln:debian-patches"
# What a .dsc may name, quoted into the script as it is: Debian's own file names.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~_-]*")

UNPACK_SCRIPT = r"""mkdir "$kiln_into"
cd "$kiln_into"
tar --no-same-owner --strip-components=1 -xf "/src/$kiln_orig"
for kiln_component in $kiln_components; do
  kiln_name=${kiln_component%%=*}
  rm -rf "$kiln_name"
  mkdir "$kiln_name"
  tar --no-same-owner --strip-components=1 -xf "/src/${kiln_component#*=}" -C "$kiln_name"
done
case "$kiln_debian" in
  "") ;;
  *.diff.gz) gzip -dc "/src/$kiln_debian" | patch -p1 -s -f --no-backup-if-mismatch ;;
  *) rm -rf debian
     tar --no-same-owner -xf "/src/$kiln_debian" ;;
esac
if [ -f debian/patches/series ]; then
  sed -e 's/#.*//' debian/patches/series | while read -r kiln_patch kiln_options; do
    [ -n "$kiln_patch" ] || continue
    echo "kiln: applying debian/patches/$kiln_patch"
    patch ${kiln_options:--p1} -s -f --no-backup-if-mismatch < "debian/patches/$kiln_patch"
  done
fi
"""
UNPACK_SHA256 = hashlib.sha256(UNPACK_SCRIPT.encode()).hexdigest()


def unpack_step(source: DebianSource, files: list[str]) -> str:
    """The build's first step for `source`: its files (as the .dsc lists them) unpacked
    into <package> under the build directory, patches applied; a subshell of its own."""
    for name in files:
        if not _SAFE_NAME.fullmatch(name):
            raise InputError(f"debian-source:{source.package}: the .dsc names a file"
                             f" {name!r} Kiln will not unpack", reason="bad-source")
    orig = [n for n in files if re.search(r"\.orig\.tar\.[a-z0-9]+$", n)]
    components = [n for n in files if re.search(r"\.orig-[A-Za-z0-9-]+\.tar\.[a-z0-9]+$", n)]
    debian = [n for n in files if re.search(r"\.debian\.tar\.[a-z0-9]+$|\.diff\.gz$", n)]
    native = [n for n in files if re.search(r"\.tar\.[a-z0-9]+$", n)
              and n not in orig + components + debian]
    if len(orig) + len(native) != 1 or len(debian) > 1 or (native and (components or debian)):
        raise InputError(f"debian-source:{source.package}: the .dsc's files {files} are no"
                         " source format Kiln unpacks (3.0 quilt or native, 1.0)",
                         reason="bad-source")
    pairs = " ".join(f"{_component(n)}={n}" for n in components)
    return ("(\n"
            f"kiln_into={source.package}\n"
            f"kiln_orig={(orig or native)[0]}\n"
            f"kiln_components='{pairs}'\n"
            f"kiln_debian={debian[0] if debian else ''}\n"
            f"{UNPACK_SCRIPT})\n")


def _component(name: str) -> str:
    found = re.search(r"\.orig-([A-Za-z0-9-]+)\.tar\.", name)
    assert found is not None
    return found.group(1)
