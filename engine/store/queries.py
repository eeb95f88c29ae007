"""Opening the store and the few queries on the request path.

`fetch_principal` is the only query an authenticated request needs: the user, their team
memberships and whether the token is revoked, in one round trip. Everything it returns
is a frozen value, never an ORM object, so the decision core never touches the store.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from tortoise import Tortoise
from tortoise.context import TortoiseContext
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Subquery

from engine.decide import User
from engine.passwords import hash_password
from engine.store.models import ApiToken, Revocation
from engine.store.models import User as UserRow
from engine.store.reading import FileReader, sqlite_file

__all__ = [
    "bootstrap_admin",
    "close_store",
    "fetch_principal",
    "list_api_tokens",
    "open_store",
    "ping_store",
    "prune_revocations",
    "revoked_jtis",
    "use_store",
]

MODELS: Final = ["engine.store.models", "engine.store.catalog"]

_PRINCIPAL: Final = """
SELECT u.email, u.is_admin, u.is_active, u.roles, m.team_id,
       (SELECT COUNT(*) FROM token_revocations r WHERE r.jti = {jti}) AS revoked
FROM users u LEFT JOIN memberships m ON m.user_id = u.id
WHERE u.email = {email}
"""


def _database_url(url: str) -> str:
    """tortoise names the PostgreSQL driver in the scheme; accept the usual spellings."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "asyncpg://" + url.removeprefix(prefix)
    return url


async def open_store(url: str) -> TortoiseContext:
    """Connect and create or migrate the schema; safe to run on every start.

    The store lives in its own `TortoiseContext` rather than tortoise's global state, so
    two apps in one process (tests, or a gateway and its tools) never share connections.
    Each request activates it with `use_store`.
    """
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    context = TortoiseContext()
    use_store(context)
    await context.init(db_url=_database_url(url), modules={"models": MODELS})
    await context.generate_schemas(safe=True)
    return context


def use_store(context: TortoiseContext) -> None:
    """Make `context` the store of the running task (and the tasks it starts)."""
    # The token is not kept: the setting ends with the task that made it.
    context.__enter__()


async def close_store(context: TortoiseContext) -> None:
    await context.close_connections()


async def ping_store() -> bool:
    try:
        await Tortoise.get_connection("default").execute_query("SELECT 1")
    except Exception:
        return False
    return True


def _placeholders(count: int) -> Sequence[str]:
    dialect = Tortoise.get_connection("default").capabilities.dialect
    return [f"${i + 1}" for i in range(count)] if dialect == "postgres" else ["?"] * count


async def fetch_principal(email: str, jti: str | None) -> tuple[User | None, bool]:
    """The user named by a token and whether its `jti` is revoked, in one query.

    Raises:
        Exception: whatever the driver raises when the store cannot answer; the caller
            turns that into "unknown" and the policy decides.
    """
    jti_mark, email_mark = _placeholders(2)
    _, rows = await Tortoise.get_connection("default").execute_query(
        _PRINCIPAL.format(jti=jti_mark, email=email_mark), [jti or "", email]
    )
    if not rows:
        # No user; the revocation still matters for the reason given, so ask for it alone.
        revoked = bool(jti) and await Revocation.filter(jti=jti).exists()
        return None, revoked
    first = dict(rows[0])
    roles = first["roles"]
    roles = json.loads(roles) if isinstance(roles, str) else roles
    user = User(
        email=first["email"],
        admin=bool(first["is_admin"]),
        active=bool(first["is_active"]),
        teams=frozenset(str(dict(r)["team_id"]) for r in rows if dict(r)["team_id"] is not None),
        roles=frozenset(roles or ()),
    )
    return user, bool(first["revoked"])


_TOKENS: Final = """
SELECT t.jti, t.name, t.scopes, t.teams, t.expires_at, t.created_at, t.last_used_at,
       (r.jti IS NOT NULL) AS revoked
FROM api_tokens t JOIN users u ON u.id = t.owner_id
LEFT JOIN token_revocations r ON r.jti = t.jti
WHERE u.email = {email}
ORDER BY t.created_at DESC
"""


async def list_api_tokens(email: str) -> list[dict[str, Any]]:
    """A user's API tokens with their revocation state, in one query.

    Raw SQL because this is the busiest list route: building the same query through the
    ORM costs about five times the round trip itself.
    """
    (mark,) = _placeholders(1)
    _, rows = await Tortoise.get_connection("default").execute_query(_TOKENS.format(email=mark), [email])
    return [
        {
            "jti": row["jti"],
            "name": row["name"],
            "scopes": _json_value(row["scopes"]),
            "teams": _json_value(row["teams"]),
            "expires_at": _timestamp(row["expires_at"]),
            "created_at": _timestamp(row["created_at"]),
            "last_used_at": _timestamp(row["last_used_at"]),
            "revoked": bool(row["revoked"]),
        }
        for row in map(dict, rows)
    ]


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _timestamp(value: Any) -> str | None:
    """ISO 8601 whatever the driver returns (SQLite: text, asyncpg: datetime)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.isoformat()
    return dt.datetime.fromisoformat(str(value)).isoformat()


async def revoked_jtis() -> list[str]:
    return [str(j) for j in await Revocation.all().values_list("jti", flat=True)]


_PRUNED_PER_DELETE: Final = 500


async def prune_revocations(expired_before: dt.datetime) -> list[str]:
    """Drop the revocations of this gateway's API tokens that expired before
    `expired_before`, and answer their jtis.

    Such a token is refused for its expiry whatever the revocation says, and without
    pruning the revocations (and the cache's set of them) only ever grow. A revocation of
    a token the gateway did not record is kept: nothing says when that token expires.
    """
    issued = Subquery(ApiToken.filter(expires_at__lt=expired_before).values("jti"))
    jtis = [str(j) for j in await Revocation.filter(jti__in=issued).values_list("jti", flat=True)]
    for first in range(0, len(jtis), _PRUNED_PER_DELETE):
        await Revocation.filter(jti__in=jtis[first : first + _PRUNED_PER_DELETE]).delete()
    return jtis


async def bootstrap_admin(email: str, password: str) -> bool:
    """Create the platform admin on first start; an existing account is left as it is."""
    if await UserRow.filter(email=email).exists():
        return False
    try:
        await UserRow.create(
            email=email, password_hash=hash_password(password), is_admin=True, full_name="Platform admin"
        )
    except IntegrityError:
        return False  # another process created it between the check and the insert
    return True


async def visible_rows(
    table: str,
    columns: Sequence[str],
    *,
    unrestricted: bool,
    teams: Sequence[str],
    owner: str | None,
    where: Mapping[str, Any] | None = None,
    ids: Sequence[str] | None = None,
    reader: FileReader | None = None,
) -> list[dict[str, Any]]:
    """Available catalog rows the caller may see, as plain dicts, ordered by name.

    The same filter as the REST catalog's, written out by hand for the MCP list and call
    paths, where the ORM's query building costs more than the query itself. With a
    `reader`, the query runs on this thread (see `engine.store.reading`).
    """
    clauses: list[str] = ["available = {}"]
    values: list[Any] = [True]
    if not unrestricted:
        alternatives = ["visibility = 'public'"]
        if teams:
            alternatives.append(f"(visibility = 'team' AND team_id IN ({', '.join(['{}'] * len(teams))}))")
            values += list(teams)
        if owner is not None:
            alternatives.append("(visibility = 'private' AND owner = {})")
            values.append(owner)
        clauses.append("(" + " OR ".join(alternatives) + ")")
    for column, value in (where or {}).items():
        clauses.append(f"{column} = {{}}")
        values.append(value)
    if ids is not None:
        if not ids:
            return []
        clauses.append(f"id IN ({', '.join(['{}'] * len(ids))})")
        values += list(ids)
    sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {' AND '.join(clauses)} ORDER BY name"  # noqa: S608
    # A reader reads a SQLite file, whose placeholders need no look-up of the connection.
    sql = sql.format(*(["?"] * len(values) if reader is not None else _placeholders(len(values))))
    read = reader.fetch(sql, values, _decoded) if reader is not None else None
    if read is None:
        _, rows = await Tortoise.get_connection("default").execute_query(sql, values)
        read = [_decoded(dict(row)) for row in rows]
    return read


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) if k in _JSON_COLUMNS else v for k, v in row.items()}


_JSON_COLUMNS: Final = frozenset({"input_schema", "arguments", "tool_ids", "resource_ids", "prompt_ids"})
