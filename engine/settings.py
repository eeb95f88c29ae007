"""Process wiring read from the environment: where to listen, which store, which keys.

Security behaviour is policy data; `Settings` holds only what an operator wires up per
process, secrets included. Secrets live here and nowhere else: they are never logged,
never printed by `policygate effective`, and `repr` masks them. Values are checked with
Cerberus so a typo in a number or URL stops the start with the variable's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from engine.policy.overrides import ALGORITHMS
from engine.validation import Validator

__all__ = ["DEFAULT_ADMIN_PASSWORD", "Settings", "SettingsError", "load_settings"]

DEFAULT_ADMIN_PASSWORD: Final = "changeme"  # noqa: S105 - the default that production refuses

_SCHEMA: Final[dict[str, dict[str, Any]]] = {
    "ENVIRONMENT": {"type": "string", "allowed": ["development", "staging", "production", "test"]},
    # host:port, [IPv6]:port, or a Unix socket's path as Hypercorn takes it.
    "BIND": {"type": "string", "regex": r"^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):\d{1,5}$|^unix:/\S+$"},
    "WORKERS": {"type": "integer", "coerce": int, "min": 1, "max": 64},
    "POLICY_PATHS": {"type": "string", "empty": False},
    "POLICY_WATCH": {"type": "boolean", "coerce": "flag"},
    "DATA_DIR": {"type": "string", "empty": False},
    "DATABASE_URL": {"type": "string", "regex": r"^(sqlite|postgres|postgresql|asyncpg)://.*$"},
    "REDIS_URL": {"type": "string", "regex": r"^rediss?://.+$"},
    "JWT_ALGORITHM": {"type": "string", "allowed": list(ALGORITHMS)},
    "JWT_SECRET_KEY": {"type": "string"},
    "AUTH_ENCRYPTION_SECRET": {"type": "string", "minlength": 32},
    "JWT_PUBLIC_KEY_PATH": {"type": "string"},
    "JWT_PRIVATE_KEY_PATH": {"type": "string"},
    "PLATFORM_ADMIN_EMAIL": {"type": "string", "regex": r"^[^@\s]+@[^@\s]+$"},
    "PLATFORM_ADMIN_PASSWORD": {"type": "string"},
    "TOKEN_EXPIRY": {"type": "integer", "coerce": int, "min": 1, "max": 525600},
    "CACHE_TTL_SECONDS": {"type": "integer", "coerce": int, "min": 0, "max": 3600},
    "HEALTH_CHECK_INTERVAL": {"type": "integer", "coerce": int, "min": 0, "max": 86400},
    "HEALTH_CHECK_TIMEOUT": {"type": "integer", "coerce": int, "min": 1, "max": 300},
    "UNHEALTHY_THRESHOLD": {"type": "integer", "coerce": int, "min": 1, "max": 100},
    "LOG_LEVEL": {"type": "string", "allowed": ["DEBUG", "INFO", "WARNING", "ERROR"]},
}


class SettingsError(Exception):
    """A variable is malformed, or the settings are unsafe for the environment."""


def _flag(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a gateway process needs besides the policy."""

    environment: str = "development"
    bind: str = "127.0.0.1:4444"
    workers: int = 1
    policy_paths: tuple[str, ...] = ("policies",)
    policy_watch: bool = True
    data_dir: str = "data"
    database_url: str = field(default="", repr=False)  # may hold a password
    redis_url: str | None = field(default=None, repr=False)
    jwt_algorithm: str = "HS256"
    jwt_secret_key: str | None = field(default=None, repr=False)
    auth_encryption_secret: str | None = field(default=None, repr=False)
    jwt_public_key_path: str | None = None
    jwt_private_key_path: str | None = None
    platform_admin_email: str = "admin@example.com"
    platform_admin_password: str = field(default=DEFAULT_ADMIN_PASSWORD, repr=False)
    token_expiry_minutes: int = 60
    cache_ttl_seconds: int = 30
    health_check_interval: int = 60
    health_check_timeout: int = 10
    unhealthy_threshold: int = 3
    log_level: str = "INFO"

    @property
    def store_url(self) -> str:
        """The store to use: DATABASE_URL, or SQLite in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite://{Path(self.data_dir).resolve() / 'policygate.db'}"

    @property
    def production(self) -> bool:
        return self.environment == "production"


_NAMES: Final = {
    "ENVIRONMENT": "environment",
    "BIND": "bind",
    "WORKERS": "workers",
    "POLICY_PATHS": "policy_paths",
    "POLICY_WATCH": "policy_watch",
    "DATA_DIR": "data_dir",
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "JWT_ALGORITHM": "jwt_algorithm",
    "JWT_SECRET_KEY": "jwt_secret_key",
    "AUTH_ENCRYPTION_SECRET": "auth_encryption_secret",
    "JWT_PUBLIC_KEY_PATH": "jwt_public_key_path",
    "JWT_PRIVATE_KEY_PATH": "jwt_private_key_path",
    "PLATFORM_ADMIN_EMAIL": "platform_admin_email",
    "PLATFORM_ADMIN_PASSWORD": "platform_admin_password",
    "TOKEN_EXPIRY": "token_expiry_minutes",
    "CACHE_TTL_SECONDS": "cache_ttl_seconds",
    "HEALTH_CHECK_INTERVAL": "health_check_interval",
    "HEALTH_CHECK_TIMEOUT": "health_check_timeout",
    "UNHEALTHY_THRESHOLD": "unhealthy_threshold",
    "LOG_LEVEL": "log_level",
}
_SECRET_VARIABLES: Final = frozenset(
    {"AUTH_ENCRYPTION_SECRET", "JWT_SECRET_KEY", "PLATFORM_ADMIN_PASSWORD", "DATABASE_URL", "REDIS_URL"}
)


def load_settings(env: Mapping[str, str], **flags: Any) -> Settings:
    """Settings from environment variables, with command-line `flags` taking precedence.

    Raises:
        SettingsError: a variable does not validate; the message names it, never its value
            when it is a secret.
    """
    raw = {name: env[name] for name in _SCHEMA if env.get(name, "") != ""}
    # A flag is held to its variable's rules: `--workers 0` is as wrong as WORKERS=0.
    variables = {field_name: name for name, field_name in _NAMES.items()}
    for flag, value in flags.items():
        if value is not None and not isinstance(value, tuple):
            raw[variables[flag]] = str(value)
    schema = {
        name: {**rule, "coerce": _flag} if rule.get("coerce") == "flag" else rule for name, rule in _SCHEMA.items()
    }
    validator = Validator(schema, allow_unknown=False)
    if not validator.validate(raw):
        problems = []
        for name, errors in sorted(validator.errors.items()):
            shown = "" if name in _SECRET_VARIABLES else f" (got `{raw.get(name)}`)"
            problems.append(f"`{name}`: {errors[0]}{shown}")
        raise SettingsError("invalid settings: " + "; ".join(problems))
    values: dict[str, Any] = {_NAMES[name]: value for name, value in validator.document.items()}
    if "policy_paths" in values:
        values["policy_paths"] = tuple(p for p in str(values["policy_paths"]).split(",") if p)
    # Paths given one by one are kept as given: one of them may hold a comma.
    values.update({k: v for k, v in flags.items() if isinstance(v, tuple)})
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})
