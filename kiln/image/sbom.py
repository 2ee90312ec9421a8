"""The image's SBOM: an SPDX 2.3 JSON document of its packages.

Deterministic like the image: no clock (created is the epoch), and the
namespace is derived from the image's config digest, so the same image has the
same SBOM bytes wherever it is composed.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from kiln.canonical import canonical_json
from kiln.fileset import FileSet
from kiln.image.compose import Image
from kiln.naming import is_debian
from kiln.package import PackageMetadata

SBOM_TYPE = "application/spdx+json"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


def spdx_id(fileset: FileSet) -> str:
    return "SPDXRef-Package-" + _ID_UNSAFE.sub("-", f"{fileset.name}-{fileset.version}")


def spdx_document(image: Image) -> bytes:
    """The SPDX 2.3 JSON bytes for `image`."""
    config_hex = image.config_blob.descriptor.digest.removeprefix("sha256:")
    image_id = "SPDXRef-Image"
    packages = [{
        "SPDXID": image_id,
        "name": image.name,
        "versionInfo": image.version,
        "downloadLocation": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "filesAnalyzed": False,
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": image_id}]
    for fileset in image.packages:
        metadata = fileset.metadata
        license_text = metadata.license if isinstance(metadata, PackageMetadata) else ""
        entry = {
            "SPDXID": spdx_id(fileset),
            "name": fileset.name,
            "versionInfo": fileset.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseDeclared": "NOASSERTION",
            "checksums": [{"algorithm": "SHA256",
                           "checksumValue": fileset.digest.removeprefix("sha256:")}],
            "comment": f"Kiln FileSet {fileset.name}@{fileset.digest}",
            "externalRefs": [_purl(fileset)],
        }
        if license_text:
            entry["licenseComments"] = license_text  # free text, not an SPDX expression
        if isinstance(metadata, PackageMetadata) and metadata.summary:
            entry["summary"] = metadata.summary
        packages.append(entry)
        relationships.append({"spdxElementId": image_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": spdx_id(fileset)})
    return canonical_json({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image.name}@{image.version}",
        "documentNamespace": f"https://kiln.dev/spdx/{config_hex}",
        "creationInfo": {"created": "1970-01-01T00:00:00Z", "creators": ["Tool: kiln"]},
        "packages": packages,
        "relationships": relationships,
    })


def _purl(fileset: FileSet) -> dict[str, str]:
    version = quote(fileset.version, safe="")
    if is_debian(fileset.name):
        _, suite, package = fileset.name.split("/", 2)
        locator = f"pkg:deb/debian/{quote(package, safe='')}@{version}?distro={suite}"
    else:
        domain, _, path = fileset.name.partition("/")
        locator = f"pkg:generic/{quote(path)}@{version}?repository_url={domain}"
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
            "referenceLocator": locator}
