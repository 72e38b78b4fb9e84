"""The ``[service]`` and ``[numbers]`` tables, the ``ARS_*`` variables that override them, and the
master key (``service/keys.py``): every mistake named with file, table and key; no secret ever in
a repr or an error."""

from __future__ import annotations

import base64
import os
import re
import stat
import textwrap
from pathlib import Path

import pytest

from ars_engine.config import ServiceConfig, Settings, load_file_config
from ars_engine.errors import ConfigError
from ars_engine.service.keys import MasterKey

KEY_HEX = "00112233445566778899aabbccddeeff" * 2  # 32 bytes
DB_PASSWORD = "hunter2-db-password"

FULL = """
[service]
listen = "0.0.0.0:9090"
database_env = "ARS_TEST_DB"
data_dir = "/srv/ars"
secret_key_env = "ARS_TEST_KEY"
backend = "asterisk"
trunk = "carrier"
target = "sip:{national}@sbc.example"
node_id = "node-7"
lease_seconds = 12
max_calls = 40
calls_per_second = 2.5
webhook_max_age_hours = 6
retention_days = 365
max_body_bytes = 2048
poll_seconds = 0.25

[numbers]
"+821012345678" = "sip:qa@127.0.0.1:5080"
"+821087654321" = "sip:qa2@10.0.0.2"
"""
FULL_ENV = {"ARS_TEST_DB": f"postgresql://ars:{DB_PASSWORD}@db.example/ars",
            "ARS_TEST_KEY": KEY_HEX}


def write(folder: Path, text: str, name: str = "ars.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_service(path: Path, env: dict[str, str]) -> ServiceConfig:
    return load_file_config(path, env).service


# -- what is read ----------------------------------------------------------------------------------
def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_service(write(tmp_path, ""), {})
    assert config == ServiceConfig()
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8080)
    assert config.database is None and config.secret_key is None
    assert config.backend == "embedded" and config.target is None and config.node_id is None
    assert (config.lease_seconds, config.max_calls, config.calls_per_second) == (30.0, 100, 20.0)
    assert (config.webhook_max_age_hours, config.retention_days) == (24.0, 1826)
    assert (config.max_body_bytes, config.poll_seconds, config.numbers) == (65536, 1.0, ())


def test_without_a_file_data_and_database_live_under_the_root(tmp_path: Path) -> None:
    service = Settings.from_env({"ARS_ROOT": str(tmp_path)}).service
    assert service.data_dir == tmp_path / "var"
    assert service.database_url == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'ars.db'}"


def test_every_service_key_is_read(tmp_path: Path) -> None:
    config = load_service(write(tmp_path, FULL), FULL_ENV)
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 9090)
    assert config.database == FULL_ENV["ARS_TEST_DB"]
    assert config.database_url == FULL_ENV["ARS_TEST_DB"]
    assert config.data_dir == Path("/srv/ars")
    assert (config.secret_key, config.secret_key_source) == (KEY_HEX,
                                                             "[service] ARS_TEST_KEY")
    assert (config.backend, config.trunk) == ("asterisk", "carrier")
    assert config.target == "sip:{national}@sbc.example"
    assert config.node_id == "node-7"
    assert (config.lease_seconds, config.max_calls, config.calls_per_second) == (12.0, 40, 2.5)
    assert (config.webhook_max_age_hours, config.retention_days) == (6.0, 365)
    assert (config.max_body_bytes, config.poll_seconds) == (2048, 0.25)
    assert dict(config.numbers) == {"+821012345678": "sip:qa@127.0.0.1:5080",
                                    "+821087654321": "sip:qa2@10.0.0.2"}


def test_a_literal_database_url_without_a_password_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, '[service]\ndatabase = "postgresql://ars@db.example/ars"\n')
    assert load_service(path, {}).database == "postgresql://ars@db.example/ars"


def test_database_url_and_secret_key_from_files_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "db.url").write_text(FULL_ENV["ARS_TEST_DB"] + "\n")
    (tmp_path / "master.key").write_text(KEY_HEX + "\n")
    path = write(tmp_path, '[service]\ndatabase_file = "db.url"\n'
                           'secret_key_file = "master.key"\n')
    config = load_service(path, {})
    assert config.database == FULL_ENV["ARS_TEST_DB"]
    assert (config.secret_key, config.secret_key_source) == (KEY_HEX,
                                                             "[service] master.key")


@pytest.mark.parametrize(("listen", "expected"), [("[::1]:8443", ("::1", 8443)),
                                                  ("localhost:1", ("localhost", 1))])
def test_listen_takes_a_host_and_port(tmp_path: Path, listen: str,
                                      expected: tuple[str, int]) -> None:
    config = load_service(write(tmp_path, f'[service]\nlisten = "{listen}"\n'), {})
    assert (config.listen_host, config.listen_port) == expected


@pytest.mark.parametrize("target", ["sip:{e164}@sbc", "sip:{number}@sbc;user=phone",
                                    "PJSIP/{national}@carrier", "sip:fixed@qa.example"])
def test_targets_using_the_known_fields_are_accepted(tmp_path: Path, target: str) -> None:
    assert load_service(write(tmp_path, f'[service]\ntarget = "{target}"\n'), {}).target == target


# -- mistakes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "env", "expected"), [
    ('listen = "nope"', {}, "[service] listen: expected \"host:port\", got 'nope'"),
    ('listen = "h:0"', {}, "[service] listen: expected \"host:port\""),
    ('listen = "h:99999"', {}, "[service] listen: expected \"host:port\""),
    ("listen = 8080", {}, "[service] listen: expected \"host:port\", got 8080"),
    ('backend = "freeswitch"', {},
     "[service] backend: expected one of ['embedded', 'asterisk'], got 'freeswitch'"),
    ('target = "sip:{trunk}@sbc"', {}, "[service] target: expected a template using {e164}"),
    ('target = "sip:{0}@sbc"', {}, "[service] target: expected a template"),
    ('target = "sip:{e164@sbc"', {}, "[service] target: expected a template"),
    ('target = "sip:{e164.real}@sbc"', {}, "[service] target: expected a template"),
    (f'database = "postgresql://ars:{DB_PASSWORD}@db/ars"', {},
     "[service] database: the URL holds a password; name an environment variable "
     "(database_env) or a file (database_file) instead"),
    ('database = "sqlite:///a.db"\ndatabase_env = "DB"', {"DB": "sqlite:///b.db"},
     "[service]: database and database_env/database_file both given; keep one"),
    ('database_env = "DB"\ndatabase_file = "db.url"', {"DB": "sqlite:///b.db"},
     "[service]: database_env and database_file both given"),
    ('database_env = "ARS_NOPE_DB"', {},
     "[service] database_env: the environment variable ARS_NOPE_DB is not set"),
    ('database_file = "/nonexistent/db.url"', {},
     "[service] database_file: cannot read /nonexistent/db.url"),
    ('secret_key_env = "ARS_NOPE_KEY"', {},
     "[service] secret_key_env: the environment variable ARS_NOPE_KEY is not set"),
    ('secret_key_env = "K"', {"K": ""},
     "[service] secret_key_env: the environment variable K is not set"),
    ('secret_key_file = "/nonexistent/master.key"', {},
     "[service] secret_key_file: cannot read /nonexistent/master.key"),
    ('secret_key_env = "K"\nsecret_key_file = "k"', {"K": KEY_HEX},
     "[service]: secret_key_env and secret_key_file both given"),
    ('listne = "h:1"', {}, "[service]: unknown key 'listne' (known: backend, calls_per_second"),
    ('secret_key = "x"', {}, "[service]: unknown key 'secret_key'"),
    ("lease_seconds = 0.5", {}, "[service] lease_seconds: expected a number ≥ 1, got 0.5"),
    ("lease_seconds = true", {}, "[service] lease_seconds: expected a number ≥ 1, got True"),
    ('lease_seconds = "30"', {}, "[service] lease_seconds: expected a number ≥ 1, got '30'"),
    ("max_calls = 0", {}, "[service] max_calls: expected a whole number ≥ 1, got 0"),
    ("max_calls = 1.5", {}, "[service] max_calls: expected a whole number ≥ 1, got 1.5"),
    ("retention_days = 30.5", {}, "[service] retention_days: expected a whole number ≥ 1"),
    ("calls_per_second = 0", {}, "[service] calls_per_second: expected a number ≥ 0.1"),
    ("webhook_max_age_hours = 0", {}, "[service] webhook_max_age_hours: expected a number ≥"),
    ("retention_days = 0", {}, "[service] retention_days: expected a whole number ≥ 1"),
    ("max_body_bytes = 100", {}, "[service] max_body_bytes: expected a whole number ≥ 1024"),
    ("poll_seconds = 0.01", {}, "[service] poll_seconds: expected a number ≥ 0.05"),
    ('data_dir = ""', {}, "[service] data_dir: expected a non-empty string, got ''"),
    ("node_id = 7", {}, "[service] node_id: expected a non-empty string, got 7"),
    ('trunk = "  "', {}, "[service] trunk: expected a non-empty string"),
])
def test_service_mistakes_name_file_table_and_key(tmp_path: Path, text: str,
                                                  env: dict[str, str], expected: str) -> None:
    path = write(tmp_path, f"[service]\n{text}\n")
    with pytest.raises(ConfigError) as caught:
        load_file_config(path, env)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ('[numbers]\n"+821012345678" = "tel:+821012345678"\n',
     "[numbers] +821012345678: expected a sip: URI, got 'tel:+821012345678'"),
    ('[numbers]\n"+821012345678" = 5\n', "[numbers] +821012345678: expected a sip: URI, got 5"),
    ("numbers = 1\n", "numbers: expected a table [numbers]"),
    ("service = 1\n", "service: expected a table [service]"),
])
def test_numbers_and_table_mistakes_name_the_file(tmp_path: Path, text: str,
                                                  expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_file_config(path, {})
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_a_database_password_never_appears_in_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, f'[service]\ndatabase = "postgresql://ars:{DB_PASSWORD}@db/ars"\n')
    with pytest.raises(ConfigError) as caught:
        load_file_config(path, {})
    assert DB_PASSWORD not in str(caught.value)


# -- the environment -------------------------------------------------------------------------------
def test_environment_overrides_the_database_and_data_dir_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "etc", '[service]\ndatabase_env = "DB"\ndata_dir = "/srv/file"\n')
    env = {"ARS_ROOT": str(tmp_path), "ARS_CONFIG": str(path), "DB": "sqlite:///from-file.db",
           "ARS_DATABASE_URL": "postgresql://ars@env.example/ars",
           "ARS_DATA_DIR": str(tmp_path / "from-env")}
    service = Settings.from_env(env).service
    assert service.database_url == "postgresql://ars@env.example/ars"
    assert service.data_dir == tmp_path / "from-env"


def test_a_relative_ars_data_dir_is_relative_to_the_root(tmp_path: Path) -> None:
    service = Settings.from_env({"ARS_ROOT": str(tmp_path), "ARS_DATA_DIR": "state"}).service
    assert service.data_dir == tmp_path / "state"
    assert service.database_url == f"sqlite+aiosqlite:///{tmp_path / 'state' / 'ars.db'}"


def test_a_relative_data_dir_in_the_file_is_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "etc", '[service]\ndata_dir = "state"\n')
    root = tmp_path / "checkout"
    service = Settings.from_env({"ARS_ROOT": str(root), "ARS_CONFIG": str(path)}).service
    assert service.data_dir == tmp_path / "etc" / "state"


def test_ars_secret_key_replaces_the_generated_key_file(tmp_path: Path) -> None:
    settings = Settings.from_env({"ARS_ROOT": str(tmp_path), "ARS_SECRET_KEY": KEY_HEX})
    key = settings.master_key()
    assert key.value == bytes.fromhex(KEY_HEX) and key.source == "ARS_SECRET_KEY"
    assert not (tmp_path / "var" / "secret.key").exists()


def test_a_secret_key_named_in_the_file_wins_over_ars_secret_key(tmp_path: Path) -> None:
    # service/keys.py: [service] secret_key_env / secret_key_file, else ARS_SECRET_KEY
    path = write(tmp_path, '[service]\nsecret_key_env = "FILE_KEY"\n')
    other = "ff" * 32
    settings = Settings.from_env({"ARS_ROOT": str(tmp_path), "ARS_CONFIG": str(path),
                                  "FILE_KEY": KEY_HEX, "ARS_SECRET_KEY": other})
    assert settings.master_key().value == bytes.fromhex(KEY_HEX)
    assert settings.master_key().source == "[service] FILE_KEY"


def test_without_a_configured_key_one_is_made_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"ARS_ROOT": str(tmp_path), "ARS_DATA_DIR": str(tmp_path / "d")})
    key = settings.master_key()
    assert key.source == str(tmp_path / "d" / "secret.key")
    assert settings.master_key() == key


def test_a_short_configured_key_is_refused_when_used(tmp_path: Path) -> None:
    settings = Settings.from_env({"ARS_ROOT": str(tmp_path), "ARS_SECRET_KEY": "abcd" * 4})
    with pytest.raises(ConfigError, match=r"^ARS_SECRET_KEY: the secret key must be at least 32"):
        settings.master_key()


# -- the master key --------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    KEY_HEX, KEY_HEX.upper(), f"  {KEY_HEX}\n",
    base64.b64encode(bytes.fromhex(KEY_HEX)).decode(),
    base64.b64encode(bytes.fromhex(KEY_HEX)).decode() + "\n",
])
def test_a_32_byte_key_is_read_as_hex_or_base64(text: str) -> None:
    key = MasterKey.from_text(text, "test")
    assert key.value == bytes.fromhex(KEY_HEX) and key.source == "test"


def test_longer_keys_are_accepted() -> None:
    assert len(MasterKey.from_text("ab" * 64, "test").value) == 64


@pytest.mark.parametrize("text", [
    "ab" * 31,  # 31 bytes of hex
    base64.b64encode(b"k" * 31).decode(),
    "correct horse battery staple, not a key",
    "",
])
def test_short_or_unreadable_keys_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MasterKey.from_text(text, "ARS_SECRET_KEY")
    message = str(caught.value)
    assert message.startswith("ARS_SECRET_KEY: the secret key must be at least 32 bytes")
    assert "token_hex(32)" in message  # says how to make one
    if text:
        assert text not in message


def test_load_or_create_makes_a_private_file_once_and_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "dir" / "secret.key"
    first = MasterKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text(encoding="ascii")
    assert len(written.strip()) == 64 and bytes.fromhex(written.strip()) == first.value
    second = MasterKey.load_or_create(path)
    assert second.value == first.value and second.source == str(path)
    assert path.read_text(encoding="ascii") == written  # not rewritten


def test_an_existing_key_file_is_used_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text(base64.b64encode(bytes.fromhex(KEY_HEX)).decode() + "\n")
    assert MasterKey.load_or_create(path).value == bytes.fromhex(KEY_HEX)


def test_a_short_key_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("abcd\n")
    with pytest.raises(ConfigError,
                       match=f"^{re.escape(str(path))}: the secret key must be at least 32"):
        MasterKey.load_or_create(path)


def test_two_generated_keys_differ(tmp_path: Path) -> None:
    a = MasterKey.load_or_create(tmp_path / "a.key")
    b = MasterKey.load_or_create(tmp_path / "b.key")
    assert a.value != b.value


def test_derived_keys_differ_per_purpose_and_per_tenant() -> None:
    key = MasterKey.from_text(KEY_HEX, "test")
    derived = [key.evidence_key, key.seal_key, key.api_key_pepper, key.derive("webhook/bank"),
               key.derive("webhook/card"), key.value]
    assert len(set(derived)) == len(derived)
    assert all(len(d) == 32 for d in derived)
    assert key.webhook_secret("bank") != key.webhook_secret("card")
    assert key.webhook_secret("bank") == "whsec_" + key.derive("webhook/bank").hex()


def test_derived_keys_are_stable_and_follow_the_master_key() -> None:
    one = MasterKey.from_text(KEY_HEX, "one")
    again = MasterKey.from_text(base64.b64encode(bytes.fromhex(KEY_HEX)).decode(), "again")
    other = MasterKey.from_text("ff" * 32, "other")
    assert one.webhook_secret("bank") == again.webhook_secret("bank")
    assert (one.evidence_key, one.seal_key, one.api_key_pepper) == (
        again.evidence_key, again.seal_key, again.api_key_pepper)
    assert one.webhook_secret("bank") != other.webhook_secret("bank")
    assert one.evidence_key != other.evidence_key and one.seal_key != other.seal_key
    assert len(one.evidence_key_id) == 16 and one.evidence_key_id != other.evidence_key_id
    assert one.evidence_key_id not in KEY_HEX


def test_reprs_never_show_the_key_or_the_database_password(tmp_path: Path) -> None:
    key = MasterKey.from_text(KEY_HEX, "ARS_SECRET_KEY")
    shown = repr(key) + str(key)
    assert shown.startswith("MasterKey(from ARS_SECRET_KEY)")
    for secret in (KEY_HEX, repr(key.value), base64.b64encode(key.value).decode()):
        assert secret not in shown
    config = load_service(write(tmp_path, FULL), FULL_ENV)
    assert config.secret_key == KEY_HEX and DB_PASSWORD in (config.database or "")
    for text in (repr(config), str(config)):
        assert KEY_HEX not in text and DB_PASSWORD not in text
        assert text.startswith("ServiceConfig(listen=0.0.0.0:9090, backend=asterisk")


def test_the_generated_key_file_is_not_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        MasterKey.load_or_create(tmp_path / "secret.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
