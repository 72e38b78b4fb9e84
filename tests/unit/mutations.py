"""Shared test helpers for the protocol parsers: recorded transcripts and mutated inputs.

``mutated(samples, specials)`` is the hypothesis strategy the fuzz tests of every parser use
(SIP torture corpus, AGI transcripts): a sample with one to six edits (a flipped byte, random
bytes inserted, a piece deleted or duplicated, the tail cut, or one of the protocol's
``specials`` inserted: the tokens most likely to confuse it). ``records(name)`` reads a recorded
Asterisk transcript (tests/transcripts/asterisk/NAME.jsonl) with its exact chunking.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

from hypothesis import strategies as st

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "transcripts" / "asterisk"


def mutated(samples: Sequence[bytes], specials: Sequence[bytes], *,
            dup_max: int = 40) -> st.SearchStrategy[bytes]:
    @st.composite
    def strategy(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(list(samples))))
        for _ in range(draw(st.integers(1, 6))):
            op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup",
                                       "special"]))
            pos = draw(st.integers(0, max(0, len(data) - 1)))
            if op == "flip" and data:
                data[pos] = draw(st.integers(0, 255))
            elif op == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
            elif op == "delete":
                del data[pos:pos + draw(st.integers(1, 16))]
            elif op == "truncate":
                del data[pos:]
            elif op == "dup":
                data[pos:pos] = data[pos:pos + draw(st.integers(1, dup_max))]
            else:
                data[pos:pos] = draw(st.sampled_from(list(specials)))
        return bytes(data)

    return strategy()


def records(name: str, *, eof: bool = False) -> list[tuple[str, bytes]]:
    """The transcript's socket reads and writes in order, ("rx"|"tx", bytes); with ``eof``
    also ("eof", b"") where the peer closed the connection."""
    out = []
    for line in (TRANSCRIPTS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["dir"] in ("rx", "tx"):
            out.append((record["dir"], base64.b64decode(record["b64"])))
        elif eof and "closed by peer" in record.get("text", ""):
            out.append(("eof", b""))
    return out
