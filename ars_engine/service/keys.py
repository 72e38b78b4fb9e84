"""The engine's master key and the keys derived from it.

One secret (32+ random bytes) is the root of everything the engine signs or seals: each tenant's
webhook signing secret, the evidence HMAC key, the key that seals call parameters at rest. The
database holds none of them: a stolen database dump signs nothing and opens no sealed code.

The master key comes from ``[service] secret_key_env`` / ``secret_key_file`` (DESIGN.md: config
secrets come from the environment or a file outside the repo), else ``ARS_SECRET_KEY``, else a file
``<data_dir>/secret.key`` made on first use with mode 0600 (so `make demo` needs no setup).
Several engine nodes sharing one database must share the master key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

MIN_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The root secret; ``derive`` gives independent keys per purpose (HMAC-SHA256 as a KDF)."""

    value: bytes
    source: str  # where it came from, for messages ("ARS_SECRET_KEY", a file path)

    def __repr__(self) -> str:  # never the key
        return f"MasterKey(from {self.source})"

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self.value, b"ars-engine/" + purpose.encode(), hashlib.sha256).digest()

    def webhook_secret(self, tenant_id: str) -> str:
        """The tenant's webhook signing secret, as printed by ``ars-engine tenants secret``."""
        return "whsec_" + self.derive(f"webhook/{tenant_id}").hex()

    @property
    def evidence_key(self) -> bytes:
        return self.derive("evidence")

    @property
    def evidence_key_id(self) -> str:
        """A public name of the evidence key (first bytes of its hash), kept in manifests."""
        return hashlib.sha256(self.evidence_key).hexdigest()[:16]

    @property
    def seal_key(self) -> bytes:
        return self.derive("seal/params")

    @property
    def api_key_pepper(self) -> bytes:
        return self.derive("api-keys")

    @classmethod
    def from_text(cls, text: str, source: str) -> MasterKey:
        """A key written as hex or base64 (at least 32 bytes once decoded)."""
        text = text.strip()
        raw: bytes | None = None
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            try:
                raw = base64.b64decode(text, validate=True)
            except ValueError:
                raw = None
        if raw is None or len(raw) < MIN_KEY_BYTES:
            raise ConfigError(f"{source}: the secret key must be at least {MIN_KEY_BYTES} bytes "
                              "written as hex or base64 (make one with: "
                              "python3 -c 'import secrets; print(secrets.token_hex(32))')")
        return cls(raw, source)

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """Read ``path``; create it (mode 0600, 32 random bytes in hex) when it is missing."""
        if not path.exists():
            # Written whole to a private temporary file, then linked into place: a process
            # starting at the same moment either wins the link or reads the winner's key, never
            # a half-written file.
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            finally:
                temporary.unlink()
        try:
            return cls.from_text(path.read_text(encoding="ascii"), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the secret key: {exc}") from exc
