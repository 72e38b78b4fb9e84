"""Coverage-guided fuzzing of the engine's parsers (atheris + libFuzzer).

``fuzz.targets`` holds one function per parser (bytes in; raises only when the parser breaks its
contract), ``fuzz.corpus`` builds each target's seed corpus from the recorded transcripts, the
RFC 4475 torture messages and the scenario files, and ``python -m fuzz.run`` runs every target
in its own libFuzzer process and reports. See docs/fuzzing.md.

Nothing here imports ``ars_engine`` at import time: the fuzzing process must import the parsers
inside atheris's instrumentation hook, so ``fuzz.targets`` is imported only where it is used.
"""
