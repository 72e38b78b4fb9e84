"""Small scenarios written inline, shared by the real-call tests (SIPp, the QA softphone)."""

from __future__ import annotations

import textwrap

# A prompt, then success: a call that needs nothing from the callee.
SHORT = textwrap.dedent("""
    scenario: short
    steps:
      hello:
        play: [{silence: 200}, {prompt: goodbye}]
        next: done
      done:
        finish: {outcome: success}
    """)

# Waits up to 20 s for one key: a call that stays up until the callee acts or hangs up.
LONG = textwrap.dedent("""
    scenario: long
    defaults:
      gather: {first_digit_timeout: 20, inter_digit_timeout: 20}
    steps:
      wait:
        gather: {prompt: {prompt: goodbye}, digits: 1, into: key}
        next: done
      done:
        finish: {outcome: success, result: {key: "{key}"}}
    """)
