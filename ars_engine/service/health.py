"""What the running telephony backend says about its links, for ``/readyz``, ``/metrics`` and the
alert rules: the embedded backend's trunk (OPTIONS keepalive, when a proxy is configured) and the
Asterisk backend's AMI connection. ``None`` means "not watched" (no proxy, another backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class BackendHealth:
    backend: str  # "embedded", "asterisk", or the backend's class name
    trunk: str | None = None  # "host:port" of the watched trunk
    trunk_up: bool | None = None  # None: no answer to OPTIONS yet, or not watched
    ami_connected: bool | None = None
    ami_state: str | None = None

    @property
    def down(self) -> list[str]:
        """The links known to be down, as words for a health report."""
        out = []
        if self.trunk_up is False:
            out.append(f"trunk {self.trunk} (no answer to OPTIONS)")
        if self.ami_connected is False:
            out.append(f"AMI ({self.ami_state})")
        return out


def backend_health(backend: Any) -> BackendHealth:
    """Read ``backend``'s links without I/O (EmbeddedBackend, AsteriskBackend or anything else)."""
    if backend is None:
        return BackendHealth("none")
    ami = getattr(backend, "ami", None)
    if ami is not None and hasattr(ami, "state"):
        state = ami.state
        name = getattr(state, "value", str(state))
        return BackendHealth("asterisk", ami_connected=name == "connected", ami_state=name)
    if hasattr(backend, "endpoint"):  # EmbeddedBackend
        driver = getattr(backend, "trunk", None)
        if driver is None:
            return BackendHealth("embedded")
        host, port = driver.monitor.trunk
        status = driver.status
        return BackendHealth("embedded", trunk=f"{host}:{port}",
                             trunk_up=None if status is None else status.up)
    return BackendHealth(type(backend).__name__)
