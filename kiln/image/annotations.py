"""The annotations a Kiln image carries (what `kiln image inspect`, `kiln verify`
and updates read back), apart from the composer, so that reading an image does
not import what composing one needs."""

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
PACKAGES = "dev.kiln.image.packages"
REQUIREMENTS = "dev.kiln.image.requirements"
OVERRIDES = "dev.kiln.image.overrides"
SET = "dev.kiln.image.set"
ENV = "dev.kiln.image.env"  # the env image.yaml declared, which an update keeps
BUDGET = "dev.kiln.image.layer-budget"
WANTED = "dev.kiln.image.wanted"  # the packages image.yaml listed, which an update re-resolves
PREVIOUS = "dev.kiln.image.previous"
LAYER_PACKAGES = "dev.kiln.layer.packages"
LAYER_ROLE = "dev.kiln.layer.role"
