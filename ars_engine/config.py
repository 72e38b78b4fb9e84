"""Settings from the environment and an optional TOML config file (``ARS_CONFIG`` or
``--config``): one typed object. The file holds what an operator sets up once (SIP bind address,
trunks); docs/configuration.md describes every key. Secrets are never in the file itself.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .config_ops import AlertsConfig, ConsoleConfig, alerts_config, console_config
from .errors import ConfigError

if TYPE_CHECKING:
    from .service.keys import MasterKey


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
    sip: SipConfig = field(default_factory=lambda: SipConfig())
    asterisk: AsteriskConfig = field(default_factory=lambda: AsteriskConfig())
    service: ServiceConfig = field(default_factory=lambda: ServiceConfig())
    alerts: AlertsConfig = field(default_factory=lambda: AlertsConfig())
    console: ConsoleConfig = field(default_factory=lambda: ConsoleConfig())
    config_file: Path | None = None

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
        config_file = Path(env["ARS_CONFIG"]) if env.get("ARS_CONFIG") else None
        file_config = load_file_config(config_file, env) if config_file else FileConfig()
        return cls(
            root=root,
            recordings_dir=Path(env.get("ARS_RECORDINGS_DIR") or root / "recordings"),
            media_cache=Path(cache) if cache else None,
            tts_online=online in ("1", "true", "yes"),
            core_signing_secret=secret.encode() if secret else None,
            sip=file_config.sip,
            asterisk=file_config.asterisk,
            service=_service_from_env(file_config.service, env, root),
            alerts=file_config.alerts,
            console=file_config.console,
            config_file=config_file,
        )

    def master_key(self) -> MasterKey:
        """The engine's master key (see :mod:`ars_engine.service.keys`)."""
        from .service.keys import MasterKey

        s = self.service
        if s.secret_key is not None:
            return MasterKey.from_text(s.secret_key, s.secret_key_source)
        return MasterKey.load_or_create(s.data_dir / "secret.key")


def split_host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` / ``[v6]:port`` or a bare IPv6 address → (host, port or
    None); ValueError when it is none of these or the port is not 0-65535."""
    if text.count(":") > 1 and not text.startswith("["):  # a bare IPv6 address, no port
        ipaddress.IPv6Address(text)  # ValueError if it is not one
        return text, None
    host, port = text, ""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        if port and not port.startswith(":"):
            raise ValueError(f"not an address: {text!r}")
        ipaddress.IPv6Address(host)
        port = port[1:] if port else ""
        if not port and text.endswith(":"):
            raise ValueError(f"not an address: {text!r}")
    elif ":" in text:
        host, _, port = text.partition(":")
        if not port:
            raise ValueError(f"not an address: {text!r}")
    if not host or (port and (not port.isdigit() or int(port) > 65535)):
        raise ValueError(f"not an address: {text!r}")
    return host, int(port) if port else None


# -- the config file (TOML) ------------------------------------------------------------------------
# Secrets never sit in the file (DESIGN.md: "config secrets come from the environment or a file
# outside the repo"): a trunk's password is named by ``password_env`` or ``password_file``.
_TRUNK_KEYS = {"proxy", "username", "password_env", "password_file", "from_user", "keepalive",
               "codecs", "answer_timeout"}
_SIP_KEYS = {"bind", "media_host", "default_trunk", "t1"}
_TOP_KEYS = {"sip", "trunks", "asterisk", "service", "numbers", "alerts", "console"}
_SERVICE_KEYS = {"listen", "database", "database_env", "database_file", "data_dir",
                 "secret_key_env", "secret_key_file", "backend", "trunk", "target", "node_id",
                 "site", "lease_seconds", "max_calls", "calls_per_second", "webhook_max_age_hours",
                 "retention_days", "max_body_bytes", "poll_seconds", "log_format"}
LOG_FORMATS = ("text", "json")
BACKENDS = ("embedded", "asterisk")
_ASTERISK_KEYS = {"ami", "ami_username", "ami_secret_env", "ami_secret_file", "ami_auth",
                  "agi_listen", "agi_allowed_hosts", "sounds_dir", "context", "dial",
                  "answer_timeout"}
CODEC_NAMES = ("PCMU", "PCMA")


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """One SIP trunk: a registrar-less outbound proxy and the credentials it challenges for."""

    name: str
    proxy: tuple[str, int] | None = None
    username: str | None = None
    password: str | None = None
    from_user: str = "ars"
    keepalive: float = 30.0  # seconds between OPTIONS pings to the proxy; 0: none
    codecs: tuple[str, ...] = CODEC_NAMES
    answer_timeout: float = 30.0

    def __repr__(self) -> str:  # never the password
        return f"TrunkConfig({self.name!r}, proxy={self.proxy}, user={self.username!r})"


@dataclass(frozen=True, slots=True)
class SipConfig:
    """The embedded SIP backend's settings from the ``[sip]`` table and the ``[trunks.*]``."""

    bind_host: str = "127.0.0.1"
    bind_port: int = 0
    media_host: str | None = None
    t1: float = 0.5
    trunks: tuple[TrunkConfig, ...] = ()
    default_trunk: str | None = None

    def trunk(self, name: str | None = None) -> TrunkConfig:
        """The trunk called ``name``, else the default one, else a direct-dial trunk."""
        wanted = name or self.default_trunk
        if wanted is None:
            return self.trunks[0] if len(self.trunks) == 1 else TrunkConfig("direct")
        for trunk in self.trunks:
            if trunk.name == wanted:
                return trunk
        known = ", ".join(t.name for t in self.trunks) or "none configured"
        raise ConfigError(f"no trunk named {wanted!r} (trunks: {known})")


@dataclass(frozen=True, slots=True)
class AsteriskConfig:
    """The Asterisk backend: where AMI is, where our FastAGI server listens, how to dial."""

    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_username: str = "ars-engine"
    ami_secret: str | None = None
    ami_auth: str = "md5"  # "md5" (challenge: the secret never crosses the wire) or "plain"
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    agi_allowed_hosts: tuple[str, ...] = ("127.0.0.1",)
    sounds_dir: Path | None = None  # shared with Asterisk; None: a directory under recordings
    context: str = "ars-out"
    dial: str = "{target}"  # dial string template: {target} is what `call` was given
    answer_timeout: float = 30.0

    def __repr__(self) -> str:  # never the secret
        return (f"AsteriskConfig(ami={self.ami_host}:{self.ami_port}, "
                f"agi={self.agi_host}:{self.agi_port})")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """``ars-engine serve``: the HTTP API, the store, the dispatcher (``[service]``), and the
    QA directory ``[numbers]`` (E.164 number → SIP URI of a test phone, checked before
    ``target``)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    database: str | None = None  # SQLAlchemy URL; None: SQLite file <data_dir>/ars.db
    data_dir: Path = Path("var")
    secret_key: str | None = None
    secret_key_source: str = ""
    backend: str = "embedded"
    trunk: str | None = None
    # How the dispatcher turns a number into the backend's dial target: {e164} (+8210…),
    # {number} (8210…), {national} (010…). Default (ServiceConfig.dial_target): the embedded
    # backend dials sip:{national}@<trunk proxy host> (127.0.0.1 without a trunk); the Asterisk
    # backend hands {national} to its [asterisk] dial template.
    target: str | None = None
    node_id: str | None = None
    site: str | None = None  # the data centre this node runs in (registry, docs/deployment.md)
    lease_seconds: float = 30.0
    max_calls: int = 100  # calls this node runs at once (all tenants, this trunk)
    calls_per_second: float = 20.0  # new calls per second this node places on its trunk
    webhook_max_age_hours: float = 24.0
    retention_days: int = 1826  # evidence and recordings: 5 years
    max_body_bytes: int = 64 * 1024
    poll_seconds: float = 1.0  # how often the dispatcher looks for due calls without a wake-up
    log_format: str = "text"  # "json": one JSON object per line with call_id and tenant
    numbers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # never the key or a database password
        return (f"ServiceConfig(listen={self.listen_host}:{self.listen_port}, "
                f"backend={self.backend}, data_dir={self.data_dir})")

    def dial_target(self, backend: str, proxy_host: str | None) -> str:
        """``target``, else the default for ``backend`` (see the field's comment)."""
        if self.target:
            return self.target
        if backend == "asterisk":
            return "{national}"
        return f"sip:{{national}}@{proxy_host or '127.0.0.1'}"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite+aiosqlite:///{self.data_dir / 'ars.db'}"


@dataclass(frozen=True, slots=True)
class FileConfig:
    """Everything the config file holds."""

    sip: SipConfig = field(default_factory=lambda: SipConfig())
    asterisk: AsteriskConfig = field(default_factory=lambda: AsteriskConfig())
    service: ServiceConfig = field(default_factory=lambda: ServiceConfig())
    alerts: AlertsConfig = field(default_factory=lambda: AlertsConfig())
    console: ConsoleConfig = field(default_factory=lambda: ConsoleConfig())


def load_file_config(path: Path, env: dict[str, str] | None = None) -> FileConfig:
    """Read an ``ars-engine`` TOML config file. Every problem raises ConfigError naming the
    file, the table and the key; unknown keys are errors (a typo must not be ignored)."""
    env = dict(os.environ) if env is None else env
    data = _read_toml(path)
    _Where(path).unknown(data, _TOP_KEYS, "the top level")
    return FileConfig(_sip_config(path, data, env), _asterisk_config(path, data, env),
                      _service_config(path, data, env), alerts_config(_Where(path), data, env),
                      console_config(_Where(path), data))


def _service_from_env(config: ServiceConfig, env: dict[str, str], root: Path) -> ServiceConfig:
    """Apply ``ARS_DATABASE_URL`` and ``ARS_DATA_DIR`` (they win over the file) and
    ``ARS_SECRET_KEY`` (used when the file names no secret_key_env / secret_key_file, as
    :mod:`ars_engine.service.keys` describes), and make ``data_dir`` absolute (relative to the
    project root)."""
    from dataclasses import replace

    data_dir = Path(env["ARS_DATA_DIR"]) if env.get("ARS_DATA_DIR") else config.data_dir
    if not data_dir.is_absolute():
        data_dir = root / data_dir
    changes: dict[str, object] = {"data_dir": data_dir}
    if env.get("ARS_DATABASE_URL"):
        changes["database"] = env["ARS_DATABASE_URL"]
    if config.secret_key is None and env.get("ARS_SECRET_KEY"):
        changes.update(secret_key=env["ARS_SECRET_KEY"], secret_key_source="ARS_SECRET_KEY")
    return replace(config, **changes)  # type: ignore[arg-type]


def _service_config(path: Path, data: dict[str, object], env: dict[str, str]) -> ServiceConfig:
    where = _Where(path)
    table = where.table(data, "service")
    where.unknown(table, _SERVICE_KEYS, "[service]")
    d = ServiceConfig()
    listen = (where.host_port(table["listen"], "[service] listen") if "listen" in table
              else (d.listen_host, d.listen_port))
    backend = where.string(table, "backend", "[service]") or d.backend
    if backend not in BACKENDS:
        raise where.fail(f"[service] backend: expected one of {list(BACKENDS)}, got {backend!r}")
    target = where.string(table, "target", "[service]")
    if target is not None:
        try:
            target.format(e164="+1", number="1", national="1")
        except (KeyError, IndexError, ValueError, AttributeError):  # AttributeError: {e164.x}
            raise where.fail("[service] target: expected a template using {e164}, {number} or "
                             f"{{national}} and no other {{…}}, got {target!r}") from None
    database = where.string(table, "database", "[service]")
    if database and _url_has_password(database):
        raise where.fail("[service] database: the URL holds a password; name an environment "
                         "variable (database_env) or a file (database_file) instead")
    secret_url = where.secret(table, "database_env", "database_file", "[service]", env)
    if database and secret_url:
        raise where.fail("[service]: database and database_env/database_file both given; "
                         "keep one")
    key_source = table.get("secret_key_env") or table.get("secret_key_file") or ""
    secret_key = where.secret(table, "secret_key_env", "secret_key_file", "[service]", env)
    numbers = where.table(data, "numbers")
    for number, uri in numbers.items():
        if not isinstance(uri, str) or not uri.startswith("sip:"):
            raise where.fail(f"[numbers] {number}: expected a sip: URI, got {uri!r}")
    log_format = where.string(table, "log_format", "[service]") or d.log_format
    if log_format not in LOG_FORMATS:
        raise where.fail(f"[service] log_format: expected one of {list(LOG_FORMATS)}, "
                         f"got {log_format!r}")
    data_dir = Path(where.string(table, "data_dir", "[service]") or d.data_dir)
    if not data_dir.is_absolute() and "data_dir" in table:
        data_dir = path.parent / data_dir
    return ServiceConfig(
        listen_host=listen[0], listen_port=listen[1],
        database=database or secret_url, data_dir=data_dir,
        secret_key=secret_key, secret_key_source=f"[service] {key_source}" if secret_key else "",
        backend=backend, trunk=where.string(table, "trunk", "[service]"), target=target,
        node_id=where.string(table, "node_id", "[service]"),
        site=where.string(table, "site", "[service]"),
        lease_seconds=where.number(table, "lease_seconds", "[service]", d.lease_seconds,
                                   minimum=1.0),
        max_calls=where.whole(table, "max_calls", "[service]", d.max_calls, minimum=1),
        calls_per_second=where.number(table, "calls_per_second", "[service]",
                                      d.calls_per_second, minimum=0.1),
        webhook_max_age_hours=where.number(table, "webhook_max_age_hours", "[service]",
                                           d.webhook_max_age_hours, minimum=0.001),
        retention_days=where.whole(table, "retention_days", "[service]", d.retention_days,
                                   minimum=1),
        max_body_bytes=where.whole(table, "max_body_bytes", "[service]", d.max_body_bytes,
                                   minimum=1024),
        poll_seconds=where.number(table, "poll_seconds", "[service]", d.poll_seconds,
                                  minimum=0.05),
        numbers=tuple((str(k), str(v)) for k, v in numbers.items()),
        log_format=log_format,
    )


def _url_has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


def _read_toml(path: Path) -> dict[str, object]:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def _asterisk_config(path: Path, data: dict[str, object], env: dict[str, str]
                     ) -> AsteriskConfig:
    where = _Where(path)
    table = where.table(data, "asterisk")
    where.unknown(table, _ASTERISK_KEYS, "[asterisk]")
    default = AsteriskConfig()
    ami = where.host_port(table["ami"], "[asterisk] ami") if "ami" in table else \
        (default.ami_host, default.ami_port)
    agi = where.host_port(table["agi_listen"], "[asterisk] agi_listen") \
        if "agi_listen" in table else (default.agi_host, default.agi_port)
    auth = table.get("ami_auth", "md5")
    if auth not in ("md5", "plain"):
        raise where.fail(f"[asterisk] ami_auth: expected \"md5\" or \"plain\", got {auth!r}")
    hosts = table.get("agi_allowed_hosts", list(default.agi_allowed_hosts))
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise where.fail(f"[asterisk] agi_allowed_hosts: expected a list of addresses, "
                         f"got {hosts!r}")
    dial = where.string(table, "dial", "[asterisk]") or default.dial
    try:
        usable = "{target}" in dial and dial.format(target="x") != dial
    except (KeyError, IndexError, ValueError, AttributeError):  # other {fields}, {target.x}
        usable = False
    if not usable:
        raise where.fail(f"[asterisk] dial: expected a template with {{target}} and no other "
                         f"{{…}}, got {dial!r}")
    sounds = where.string(table, "sounds_dir", "[asterisk]")
    return AsteriskConfig(
        ami_host=ami[0], ami_port=ami[1],
        ami_username=where.string(table, "ami_username", "[asterisk]") or default.ami_username,
        ami_secret=where.secret(table, "ami_secret_env", "ami_secret_file", "[asterisk]", env),
        ami_auth=str(auth), agi_host=agi[0], agi_port=agi[1],
        agi_allowed_hosts=tuple(hosts),
        sounds_dir=Path(sounds) if sounds else None,
        context=where.string(table, "context", "[asterisk]") or default.context,
        dial=dial,
        answer_timeout=where.number(table, "answer_timeout", "[asterisk]", 30.0, minimum=1.0),
    )


def _sip_config(path: Path, data: dict[str, object], env: dict[str, str]) -> SipConfig:
    where = _Where(path)
    sip = where.table(data, "sip")
    where.unknown(sip, _SIP_KEYS, "[sip]")
    bind_host, bind_port = "127.0.0.1", 0
    if "bind" in sip:
        bind_host, bind_port = where.host_port(sip["bind"], "[sip] bind", port_optional=True)
    trunks = []
    for name, table in where.table(data, "trunks").items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [trunks] {name}: expected a table [trunks.{name}]")
        trunks.append(where.trunk(name, table, env))
    default = where.string(sip, "default_trunk", "[sip]")
    config = SipConfig(
        bind_host=bind_host, bind_port=bind_port,
        media_host=where.string(sip, "media_host", "[sip]"),
        t1=where.number(sip, "t1", "[sip]", 0.5, minimum=0.01),
        trunks=tuple(trunks),
        default_trunk=default,
    )
    if default is not None:
        try:
            config.trunk(default)
        except ConfigError as exc:
            raise ConfigError(f"{path}: [sip] default_trunk: {exc}") from exc
    return config


class _Where:
    """Typed reads from the parsed TOML, each error naming the file, table and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {message}")

    def unknown(self, table: dict[str, object], known: set[str], where: str) -> None:
        extra = sorted(set(table) - known)
        if extra:
            known_keys = ", ".join(sorted(known))
            raise self.fail(f"{where}: unknown key {extra[0]!r} (known: {known_keys})")

    def table(self, data: dict[str, object], key: str) -> dict[str, object]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{key}: expected a table [{key}]")
        return value

    def string(self, table: dict[str, object], key: str, where: str) -> str | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(f"{where} {key}: expected a non-empty string, got {value!r}")
        return value

    def number(self, table: dict[str, object], key: str, where: str, default: float,
               minimum: float = 0.0) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(f"{where} {key}: expected a number ≥ {minimum:g}, got {value!r}")
        return float(value)

    def whole(self, table: dict[str, object], key: str, where: str, default: int,
              minimum: int) -> int:
        """A whole number (``max_calls = 1.5`` is an error, not 1)."""
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{where} {key}: expected a whole number ≥ {minimum}, "
                            f"got {value!r}")
        return value

    def host_port(self, value: object, where: str, *, port_optional: bool = False
                  ) -> tuple[str, int]:
        expected = self.fail(f'{where}: expected "host:port", got {value!r}')
        try:
            host, port = split_host_port(value if isinstance(value, str) else "")
        except ValueError:
            raise expected from None
        if port is None and port_optional:
            return host, 0
        if not port:
            raise expected
        return host, port

    def trunk(self, name: str, table: dict[str, object], env: dict[str, str]) -> TrunkConfig:
        where = f"[trunks.{name}]"
        if "password" in table:
            raise self.fail(f"{where} password: passwords are not read from the config file; "
                            "name an environment variable (password_env) or a file "
                            "(password_file)")
        self.unknown(table, _TRUNK_KEYS, where)
        proxy = self.host_port(table["proxy"], f"{where} proxy") if "proxy" in table else None
        codecs = table.get("codecs", list(CODEC_NAMES))
        if not isinstance(codecs, list) or not codecs or \
                any(not isinstance(c, str) or c.upper() not in CODEC_NAMES for c in codecs):
            raise self.fail(f"{where} codecs: expected a list among {list(CODEC_NAMES)}, "
                            f"got {codecs!r}")
        return TrunkConfig(
            name=name, proxy=proxy,
            username=self.string(table, "username", where),
            password=self.secret(table, "password_env", "password_file", where, env),
            from_user=self.string(table, "from_user", where) or "ars",
            keepalive=self.number(table, "keepalive", where, 30.0),
            codecs=tuple(c.upper() for c in codecs),
            answer_timeout=self.number(table, "answer_timeout", where, 30.0, minimum=1.0),
        )

    def secret(self, table: dict[str, object], env_key: str, file_key: str, where: str,
               env: dict[str, str]) -> str | None:
        """A secret named by an environment variable (``env_key``) or a file (``file_key``,
        relative to the config file); never the value itself."""
        variable = self.string(table, env_key, where)
        file = self.string(table, file_key, where)
        if variable and file:
            raise self.fail(f"{where}: {env_key} and {file_key} both given; keep one")
        if variable:
            value = env.get(variable)
            if not value:
                raise self.fail(f"{where} {env_key}: the environment variable {variable} "
                                "is not set")
            return value
        if file:
            secret_path = Path(file).expanduser()
            if not secret_path.is_absolute():
                secret_path = self.path.parent / secret_path
            try:
                value = secret_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise self.fail(f"{where} {file_key}: cannot read {secret_path}: "
                                f"{exc.strerror}") from exc
            if not value:
                raise self.fail(f"{where} {file_key}: {secret_path} is empty")
            return value
        return None
