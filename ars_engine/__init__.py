"""ars-engine: an outbound ARS telephony engine (YAML DTMF scenarios, Korean prompts)."""

__version__ = "0.1.0"
