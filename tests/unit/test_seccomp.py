"""The seccomp filter's system-call numbers, against the kernel's own headers, and its
two encodings naming the same calls."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from workers import seccomp

HEADERS = {"x86_64": (Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"), ""),
           "aarch64": (Path("/usr/include/asm-generic/unistd.h"), "(?:3264)?")}


@pytest.mark.parametrize("arch", sorted(HEADERS))
def test_every_number_is_the_kernels(arch: str) -> None:
    header, infix = HEADERS[arch]
    if not header.exists():
        pytest.skip(f"{header} is not installed (Debian's linux-libc-dev)")
    text = header.read_text()
    for name, number in seccomp._NUMBERS[arch].items():
        found = re.search(rf"#define __NR{infix}_{name}\s+(\d+)", text)
        assert found is not None, name
        assert int(found.group(1)) == number, name


def test_every_denied_call_has_a_reason_and_both_encodings_carry_it() -> None:
    assert all(why for why in seccomp.DENIED.values())
    program = seccomp.bpf_program("x86_64")
    instructions = [struct.unpack("<HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    compared = {k for code, _jt, _jf, k in instructions if code == 0x15}
    numbers = seccomp._NUMBERS["x86_64"]
    assert {numbers[name] for name in seccomp.DENIED} <= compared
    profile = seccomp.oci_profile("x86_64")
    assert set(profile["syscalls"][0]["names"]) == set(seccomp.DENIED)
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
