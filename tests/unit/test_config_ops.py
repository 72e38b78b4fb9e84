"""The ``[alerts]`` and ``[console]`` tables and ``[service] log_format``: defaults, values and
precise errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ars_engine.config import load_file_config
from ars_engine.config_ops import AlertsConfig, ConsoleConfig
from ars_engine.errors import ConfigError


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "ars.toml"
    path.write_text(text, encoding="utf-8")
    return load_file_config(path, env or {})


def test_defaults_without_the_tables(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.alerts == AlertsConfig() and config.console == ConsoleConfig()
    assert config.service.log_format == "text"


def test_values_are_read(tmp_path: Path) -> None:
    config = load(tmp_path, """
[alerts]
url = "https://sms.example/hook"
answer_rate_min = 0.5
answer_min_calls = 3
[console]
enabled = false
session_hours = 2
secure_cookies = "always"
[service]
log_format = "json"
""")
    assert config.alerts.url == "https://sms.example/hook"
    assert (config.alerts.answer_rate_min, config.alerts.answer_min_calls) == (0.5, 3)
    assert config.console == ConsoleConfig(False, 2.0, "always")
    assert config.service.log_format == "json"
    assert "sms.example" not in repr(config.alerts)


def test_a_url_with_a_token_comes_from_the_environment(tmp_path: Path) -> None:
    url = "https://sms.example/send?token=s3cret"
    config = load(tmp_path, '[alerts]\nurl_env = "SMS_URL"\n', {"SMS_URL": url})
    assert config.alerts.url == url
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[alerts]\nurl_env = "SMS_URL"\n', {"SMS_URL": "ftp://x/?token=s3cret"})
    assert "[alerts] url" in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.parametrize(("text", "message"), [
    ('[alerts]\nurl = "mailto:ops@example.com"', "[alerts] url: expected an http"),
    ("[alerts]\nanswer_rate_min = 1.5", "[alerts] answer_rate_min: expected a fraction"),
    ("[alerts]\nanswer_min_calls = 2.5", "[alerts] answer_min_calls: expected a whole number"),
    ("[alerts]\ninterval_seconds = 0", "[alerts] interval_seconds: expected a number ≥ 0.1"),
    ('[alerts]\nurl = "http://a/"\nurl_env = "X"', "keep one"),
    ("[alerts]\nthreshold = 1", "[alerts]: unknown key 'threshold'"),
    ('[console]\nsecure_cookies = "sometimes"', "[console] secure_cookies: expected one of"),
    ('[console]\nenabled = "yes"', "[console] enabled: expected true or false"),
    ("[console]\nsession_hours = -1", "[console] session_hours"),
    ('[service]\nlog_format = "xml"', "[service] log_format: expected one of"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, {"X": "http://b/"})
    assert message in str(caught.value)
    assert "ars.toml" in str(caught.value)
