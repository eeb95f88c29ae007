"""Process settings: numbers are coerced and bounded, and a bad value names its variable."""

from __future__ import annotations

import pytest

from engine.settings import SettingsError, load_settings


def test_health_check_settings_default_and_coerce() -> None:
    default = load_settings({})
    assert (default.health_check_interval, default.health_check_timeout, default.unhealthy_threshold) == (60, 10, 3)
    chosen = load_settings({"HEALTH_CHECK_INTERVAL": "0", "HEALTH_CHECK_TIMEOUT": "2", "UNHEALTHY_THRESHOLD": "5"})
    assert (chosen.health_check_interval, chosen.health_check_timeout, chosen.unhealthy_threshold) == (0, 2, 5)


@pytest.mark.parametrize(
    ("name", "value"),
    [("HEALTH_CHECK_INTERVAL", "-1"), ("HEALTH_CHECK_TIMEOUT", "0"), ("UNHEALTHY_THRESHOLD", "0"), ("WORKERS", "x"),
     ("BIND", "127.0.0.1:4444\n")],
)  # fmt: skip
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_a_bad_secret_is_named_but_never_shown() -> None:
    with pytest.raises(SettingsError, match="AUTH_ENCRYPTION_SECRET") as raised:
        load_settings({"AUTH_ENCRYPTION_SECRET": "short-secret-value"})
    assert "short-secret-value" not in str(raised.value)


@pytest.mark.parametrize(("flag", "value", "name"), [("workers", 0, "WORKERS"), ("bind", "0.0.0.0 :x", "BIND")])
def test_a_command_line_flag_meets_its_variables_rules(flag: str, value: object, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({}, **{flag: value})


def test_flags_take_precedence_over_the_environment() -> None:
    chosen = load_settings({"WORKERS": "2", "POLICY_PATHS": "a"}, workers=3, policy_paths=("b", "c,d"))
    assert (chosen.workers, chosen.policy_paths) == (3, ("b", "c,d"))


@pytest.mark.parametrize("bind", ["127.0.0.1:4444", "[::1]:8080", "localhost:80", "unix:/run/policygate.sock"])
def test_every_address_form_hypercorn_takes_is_accepted(bind: str) -> None:
    assert load_settings({"BIND": bind}).bind == bind
    assert load_settings({}, bind=bind).bind == bind


def test_store_and_cache_passwords_stay_out_of_the_settings_repr() -> None:
    settings = load_settings({"DATABASE_URL": "postgres://u:hunter2@db/x", "REDIS_URL": "redis://:pw-redis@r:6379"})
    assert "hunter2" not in repr(settings)
    assert "pw-redis" not in repr(settings)
