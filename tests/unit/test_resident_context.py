"""What a resident server's child can take of its client (kiln.resident.context)."""

from __future__ import annotations

import resource

from kiln.resident.context import describe, refusal


def test_a_client_like_the_server_is_taken() -> None:
    assert refusal(describe()) is None


def test_a_client_the_server_cannot_be_is_refused_with_the_reason() -> None:
    client = describe()
    assert "uid" in (refusal({**client, "uid": client["uid"] + 1}) or "")
    assert "groups" in (refusal({**client, "groups": [*client["groups"], 4242]}) or "")
    namespaces = {**client["namespaces"], "mnt": client["namespaces"]["mnt"] + 1}
    assert "namespaces" in (refusal({**client, "namespaces": namespaces}) or "")
    assert "root" in (refusal({**client, "root": [0, 0]}) or "")


def test_limits_below_the_servers_are_given_above_refused() -> None:
    client = describe()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = {**client["limits"], "RLIMIT_NOFILE": [min(soft, 64), min(hard, 64)]}
    assert refusal({**client, "limits": lower}) is None
    if hard != resource.RLIM_INFINITY:
        higher = {**client["limits"], "RLIMIT_NOFILE": [soft, hard + 1]}
        assert "RLIMIT_NOFILE is above" in (refusal({**client, "limits": higher}) or "")
    unlimited = {**client["limits"], "RLIMIT_NOFILE": [soft, resource.RLIM_INFINITY]}
    if hard != resource.RLIM_INFINITY:
        assert refusal({**client, "limits": unlimited}) is not None
    assert "unknown limit" in (refusal({**client, "limits": {"RLIMIT_NICE": [0, 0]}}) or "")
    inverted = {**client["limits"], "RLIMIT_NOFILE": [64, 32]}
    assert "malformed" in (refusal({**client, "limits": inverted}) or "")
