"""The TOML config file: trunks and the [sip] table; every mistake named with file, table, key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ars_engine.config import Settings, SipConfig, TrunkConfig, load_config_file
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


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ars.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_full_file_is_read_into_typed_settings(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, FULL), {"TRUNK_SECRET": "pa55"})
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
    assert load_config_file(path, {}).trunk("t").password == "from-file"


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
])
def test_mistakes_name_file_table_and_key(tmp_path: Path, text: str, env: dict[str, str],
                                          expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config_file(path, env)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_a_secret_never_appears_in_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[trunks.t]\npassword_env = "S"\nkeepalive = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config_file(path, {"S": "hunter2-secret"})
    assert "hunter2-secret" not in str(caught.value)


def test_unknown_trunk_name_lists_the_known_ones(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, FULL), {"TRUNK_SECRET": "x"})
    with pytest.raises(ConfigError, match=r"no trunk named 'nope' \(trunks: carrier, lab\)"):
        config.trunk("nope")


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config_file(tmp_path / "missing.toml", {})
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[sip]\nmedia_host = \"\xe9\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config_file(bad, {})
