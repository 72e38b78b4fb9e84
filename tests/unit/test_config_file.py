"""The TOML config file: trunks and the [sip] table; every mistake named with file, table, key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ars_engine.config import (
    Settings,
    SipConfig,
    TrunkConfig,
    load_file_config,
    split_host_port,
)
from ars_engine.errors import ConfigError

FULL = """
[sip]
bind = "10.0.0.5:5062"
media_host = "203.0.113.10"
default_trunk = "carrier"
t1 = 0.25

[trunks.carrier]
proxy = "sbc.carrier.example:5060"
username = "ars-trunk"
password_env = "TRUNK_SECRET"
from_user = "0215551234"
keepalive = 15
codecs = ["pcma", "PCMU"]
answer_timeout = 45

[trunks.lab]
proxy = "127.0.0.1:5070"
"""


def load_sip(path: Path, env: dict[str, str]) -> SipConfig:
    return load_file_config(path, env).sip


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ars.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_full_file_is_read_into_typed_settings(tmp_path: Path) -> None:
    config = load_sip(write(tmp_path, FULL), {"TRUNK_SECRET": "pa55"})
    assert (config.bind_host, config.bind_port) == ("10.0.0.5", 5062)
    assert config.media_host == "203.0.113.10" and config.t1 == 0.25
    carrier = config.trunk()
    assert carrier == TrunkConfig("carrier", ("sbc.carrier.example", 5060), "ars-trunk", "pa55",
                                  "0215551234", 15.0, ("PCMA", "PCMU"), 45.0)
    assert config.trunk("lab").proxy == ("127.0.0.1", 5070)
    assert config.trunk("lab").password is None
    assert "pa55" not in repr(carrier) and "pa55" not in repr(config)


def test_password_from_a_file_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "trunk.secret").write_text("from-file\n")
    path = write(tmp_path, '[trunks.t]\nproxy = "h:5060"\npassword_file = "trunk.secret"\n')
    assert load_sip(path, {}).trunk("t").password == "from-file"


def test_no_file_means_direct_dialing_with_defaults() -> None:
    config = SipConfig()
    assert config.trunk() == TrunkConfig("direct")
    assert Settings.from_env({"ARS_ROOT": "/tmp"}).sip == SipConfig()


def test_settings_read_the_file_named_by_ars_config(tmp_path: Path) -> None:
    path = write(tmp_path, '[trunks.only]\nproxy = "h:5060"\n')
    settings = Settings.from_env({"ARS_ROOT": str(tmp_path), "ARS_CONFIG": str(path)})
    assert settings.config_file == path and settings.sip.trunk().name == "only"


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("[sip]\nbind = 5060\n", {}, "[sip] bind: expected \"host:port\", got 5060"),
    ("[sip]\nbindd = \"h:1\"\n", {}, "[sip]: unknown key 'bindd'"),
    ("[sipp]\n", {}, "the top level: unknown key 'sipp'"),
    ("[trunks.t]\nproxy = \"h\"\n", {}, "[trunks.t] proxy: expected \"host:port\", got 'h'"),
    ("[trunks.t]\nproxy = \"h:70000\"\n", {}, "[trunks.t] proxy: expected \"host:port\""),
    ("[trunks.t]\npassword = \"x\"\n", {}, "[trunks.t] password: passwords are not read"),
    ("[trunks.t]\npassword_env = \"NOPE\"\n", {},
     "[trunks.t] password_env: the environment variable NOPE is not set"),
    ("[trunks.t]\npassword_file = \"/nonexistent/secret\"\n", {},
     "[trunks.t] password_file: cannot read /nonexistent/secret"),
    ("[trunks.t]\npassword_env = \"A\"\npassword_file = \"f\"\n", {"A": "1"},
     "[trunks.t]: password_env and password_file both given"),
    ("[trunks.t]\ncodecs = [\"G729\"]\n", {}, "[trunks.t] codecs: expected a list among"),
    ("[trunks.t]\nkeepalive = -1\n", {}, "[trunks.t] keepalive: expected a number ≥ 0"),
    ("[trunks.t]\nanswer_timeout = true\n", {}, "[trunks.t] answer_timeout: expected a number"),
    ("[trunks]\nt = 1\n", {}, "[trunks] t: expected a table [trunks.t]"),
    ("[sip]\ndefault_trunk = \"x\"\n[trunks.t]\n", {},
     "[sip] default_trunk: no trunk named 'x' (trunks: t)"),
    ("[sip\n", {}, "not valid TOML"),
    ("[sip]\nbind = \"::1:5060:x\"\n", {}, "[sip] bind: expected \"host:port\""),
    ("[asterisk]\nami = \"h\"\n", {}, "[asterisk] ami: expected \"host:port\", got 'h'"),
    ("[asterisk]\nami_auth = \"sha\"\n", {}, "[asterisk] ami_auth: expected \"md5\" or"),
    ("[asterisk]\ndial = \"PJSIP/x\"\n", {}, "[asterisk] dial: expected a template with"),
    ("[asterisk]\ndial = \"PJSIP/{target}@{trunk}\"\n", {},
     "[asterisk] dial: expected a template with"),
    ("[asterisk]\ndial = \"PJSIP/{target.real}\"\n", {},
     "[asterisk] dial: expected a template with"),
    ("[asterisk]\nami_secret_env = \"NOPE\"\n", {},
     "[asterisk] ami_secret_env: the environment variable NOPE is not set"),
    ("[asterisk]\nagi_allowed_hosts = []\n", {}, "[asterisk] agi_allowed_hosts: expected"),
])
def test_mistakes_name_file_table_and_key(tmp_path: Path, text: str, env: dict[str, str],
                                          expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_file_config(path, env)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_a_secret_never_appears_in_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[trunks.t]\npassword_env = "S"\nkeepalive = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_sip(path, {"S": "hunter2-secret"})
    assert "hunter2-secret" not in str(caught.value)


def test_unknown_trunk_name_lists_the_known_ones(tmp_path: Path) -> None:
    config = load_sip(write(tmp_path, FULL), {"TRUNK_SECRET": "x"})
    with pytest.raises(ConfigError, match=r"no trunk named 'nope' \(trunks: carrier, lab\)"):
        config.trunk("nope")


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_sip(tmp_path / "missing.toml", {})
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[sip]\nmedia_host = \"\xe9\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_sip(bad, {})


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.5", ("10.0.0.5", None)), ("10.0.0.5:5062", ("10.0.0.5", 5062)),
    ("sbc.example:5060", ("sbc.example", 5060)), ("::1", ("::1", None)),
    ("[::1]:5070", ("::1", 5070)), ("[fe80::1]", ("fe80::1", None)),
])
def test_addresses_split_into_host_and_port(text: str, expected: tuple[str, int | None]
                                            ) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text", ["", ":5060", "h:port", "h:70000", "[::1]:x", "h:"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(text)


def test_the_asterisk_table(tmp_path: Path) -> None:
    path = write(tmp_path, '''
        [asterisk]
        ami = "10.0.0.9:5038"
        ami_secret_file = "ami.secret"
        agi_listen = "0.0.0.0:4573"
        agi_allowed_hosts = ["10.0.0.9"]
        dial = "PJSIP/{target}@carrier"
        ''')
    (tmp_path / "ami.secret").write_text("s3\n")
    config = load_file_config(path, {}).asterisk
    assert (config.ami_host, config.ami_port, config.ami_secret) == ("10.0.0.9", 5038, "s3")
    assert (config.agi_host, config.agi_port) == ("0.0.0.0", 4573)
    assert config.agi_allowed_hosts == ("10.0.0.9",) and config.dial == "PJSIP/{target}@carrier"
    assert "s3" not in repr(config)
