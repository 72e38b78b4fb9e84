"""Settings from the environment (one typed object). Later issues add a config file and trunks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


def project_root() -> Path:
    """The checkout this package runs from (where prompts/ and scenarios/ are), else the cwd."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "prompts").is_dir() else Path.cwd()


@dataclass(frozen=True, slots=True)
class Settings:
    root: Path
    recordings_dir: Path
    media_cache: Path | None
    tts_online: bool
    core_signing_secret: bytes | None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read ``ARS_*`` variables; a bad value raises ConfigError naming the variable."""
        env = dict(os.environ) if env is None else env
        root = Path(env.get("ARS_ROOT") or project_root())
        online = env.get("ARS_TTS_ONLINE", "0").strip().lower()
        if online not in ("0", "1", "true", "false", "yes", "no", ""):
            raise ConfigError(f"ARS_TTS_ONLINE: expected 0/1/true/false, got {online!r}")
        secret = env.get("ARS_CORE_SIGNING_SECRET")
        cache = env.get("ARS_MEDIA_CACHE")
        return cls(
            root=root,
            recordings_dir=Path(env.get("ARS_RECORDINGS_DIR") or root / "recordings"),
            media_cache=Path(cache) if cache else None,
            tts_online=online in ("1", "true", "yes"),
            core_signing_secret=secret.encode() if secret else None,
        )
