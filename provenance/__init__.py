"""Signed provenance: in-toto statements with SLSA v1 predicates, signed as DSSE
envelopes in Sigstore bundles, attached in the registry and verified by policy."""
