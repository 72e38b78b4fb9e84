"""Step kinds, registered by their YAML key (one module per kind)."""

from . import branch, check, finish, gather, play, record, retry, setvar, webhook
from .base import STEP_KINDS, Step

__all__ = ["STEP_KINDS", "Step", "branch", "check", "finish", "gather", "play", "record", "retry",
           "setvar", "webhook"]
