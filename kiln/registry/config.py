"""Which registry holds which names, and the credentials for each host.

`registries.yaml` (`$KILN_REGISTRIES`, else `~/.config/kiln/registries.yaml`)
maps name prefixes to registry locations, longest prefix first, as containers'
registries.conf does:

    registries:
      - prefix: kiln.dev/
        location: registry.example.org/kiln
      - prefix: ""                     # every other name
        location: 127.0.0.1:5000/mirror
    insecure: [registry.test:5000]     # plain http (loopback hosts are, by default)
    secure: [127.0.0.1:5443]           # https on a loopback host

`kiln.dev/hello` then lives at `registry.example.org/kiln/hello`, tag `2.10-1`.
https checks certificates against the system's CAs (`SSL_CERT_FILE` points
elsewhere).
Credentials come from the auth file podman and skopeo use
(`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
`~/.docker/config.json`): `{"auths": {"HOST": {"auth": base64("user:password")}}}`.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import InputError
from kiln.naming import validate_name
from kiln.recipes.yamldoc import Node, load_yaml_file
from kiln.registry.naming import component_to_oci, version_to_tag
from kiln.registry.reference import Reference, parse_reference


@dataclass(frozen=True)
class Mapping:
    """Where packages whose names start with `prefix` are published."""

    prefix: str
    location: str


@dataclass(frozen=True)
class RegistryConfig:
    """registries.yaml: where names are published, and which hosts speak plain http."""

    mappings: tuple[Mapping, ...] = ()
    insecure: frozenset[str] = frozenset()
    secure: frozenset[str] = frozenset()

    def locate(self, name: str, version: str | None = None) -> Reference:
        """Where `name` (at `version`, as a tag) is pushed and pulled."""
        for mapping in sorted(self.mappings, key=lambda m: -len(m.prefix)):
            if name.startswith(mapping.prefix):
                validate_name(name)
                kept = name[len(mapping.prefix):].strip("/").split("/")
                rest = "/".join(component_to_oci(part) for part in kept)
                reference = parse_reference(f"{mapping.location.rstrip('/')}/{rest}")
                return reference.with_tag(version_to_tag(version) if version else None)
        raise InputError(f"no registry is configured for {name}: give a target, or map a"
                         " prefix of it in registries.yaml ($KILN_REGISTRIES)",
                         reason="no-registry")

    def uses_http(self, host: str) -> bool:
        if host in self.insecure:
            return True
        return host not in self.secure and Reference(host, "x").is_loopback


def config_path() -> Path:
    configured = os.environ.get("KILN_REGISTRIES")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "kiln" / "registries.yaml"


def load_config(path: Path | None = None) -> RegistryConfig:
    """The registry configuration; none at all when the file does not exist."""
    path = path or config_path()
    if not path.exists():
        return RegistryConfig()
    root = load_yaml_file(path)
    mappings: list[Mapping] = []
    insecure: set[str] = set()
    secure: set[str] = set()
    for key, line, value in _pairs(root, path):
        if key == "registries":
            for item in _items(value, path, key):
                fields = {k: _text(v, path, k) for k, _, v in _pairs(item, path)}
                if set(fields) != {"prefix", "location"}:
                    raise InputError(f"{path}:{item.line}: a registry needs exactly prefix and"
                                     " location", reason="bad-config")
                try:
                    parse_reference(fields["location"].rstrip("/") + "/x")
                except InputError as exc:
                    raise InputError(f"{path}:{item.line}: location {fields['location']!r} is"
                                     " not HOST[:PORT][/PATH]", reason="bad-config") from exc
                mappings.append(Mapping(fields["prefix"], fields["location"]))
        elif key == "insecure":
            insecure.update(_text(item, path, key) for item in _items(value, path, key))
        elif key == "secure":
            secure.update(_text(item, path, key) for item in _items(value, path, key))
        else:
            raise InputError(f"{path}:{line}: unknown key {key!r}", reason="bad-config")
    return RegistryConfig(tuple(mappings), frozenset(insecure), frozenset(secure))


def _pairs(node: Node, path: Path) -> tuple[tuple[str, int, Node], ...]:
    if node.kind != "map":
        raise InputError(f"{path}:{node.line}: expected a mapping", reason="bad-config")
    return node.pairs


def _items(node: Node, path: Path, key: str) -> tuple[Node, ...]:
    if node.kind != "seq":
        raise InputError(f"{path}:{node.line}: {key} must be a list", reason="bad-config")
    return node.items


def _text(node: Node, path: Path, key: str) -> str:
    if node.kind != "scalar":
        raise InputError(f"{path}:{node.line}: {key} must be a string", reason="bad-config")
    return node.text or ""


@dataclass(frozen=True)
class Credentials:
    """A login for a registry, from podman's or skopeo's auth file."""

    username: str
    password: str


def auth_file() -> Path:
    configured = os.environ.get("REGISTRY_AUTH_FILE")
    if configured:
        return Path(configured)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and (Path(runtime) / "containers" / "auth.json").exists():
        return Path(runtime) / "containers" / "auth.json"
    return Path.home() / ".docker" / "config.json"


def credentials_for(host: str, path: Path | None = None) -> Credentials | None:
    """The user and password the auth file holds for `host`, if any."""
    path = path or auth_file()
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        raise InputError(f"cannot read registry credentials from {path}: {exc}",
                         reason="bad-config") from exc
    entry = auths.get(host)
    if not isinstance(entry, dict) or "auth" not in entry:
        return None
    try:
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: the auth entry for {host} is not base64 of user:password",
                         reason="bad-config") from exc
    return Credentials(user, password)
