"""Optional access control: collections only named users may search from the chat.

A shared-secret gate inside the chat's process, checked where the retriever is built (server-side:
a browser can't skip it). It is not encryption: anyone who can read DATA_DIR or reach the Chroma
server reads every collection.
"""

from __future__ import annotations

import getpass
import hmac
import os
import sys

from core.settings import Settings


class AccessError(PermissionError):
    """A restricted collection was asked for by someone not allowed to read it."""


def sign_in(settings: Settings, user: str, token: str) -> str | None:
    """`user` when the token is theirs, else None (compared in constant time)."""
    expected = settings.access.users.get(user)
    if expected is None or not token:
        return None
    return user if hmac.compare_digest(expected.get_secret_value().encode(), token.encode()) else None


def may_read(settings: Settings, collection: str, user: str | None) -> bool:
    allowed = settings.access.collections.get(collection)
    return allowed is None or user in allowed


def readable(settings: Settings, collections: list[str], user: str | None) -> list[str]:
    return [name for name in collections if may_read(settings, name, user)]


def require(settings: Settings, collections: list[str], user: str | None) -> None:
    for name in collections:
        if not may_read(settings, name, user):
            who = f"user '{user}'" if user else "anonymous users"
            raise AccessError(f"collection '{name}' is restricted: {who} may not read it (sign in as one of its users)")


def cli_user(settings: Settings, user: str | None) -> str | None:
    """A command-line user (`--user NAME`), signed in with the token in ASKDOCS_TOKEN, or typed when
    a terminal can ask; AccessError when it is wrong. None: anonymous."""
    if user is None:
        return None
    token = os.environ.get("ASKDOCS_TOKEN") or (getpass.getpass(f"token for {user}: ") if sys.stdin.isatty() else "")
    if sign_in(settings, user, token) is None:
        raise AccessError(f"--user {user}: unknown user or wrong token (give it in ASKDOCS_TOKEN)")
    return user


def opened_for(settings: Settings, user: str | None) -> Settings:
    """Settings for a command run by `user`, who may read the settings' collection (else AccessError):
    the collections they may read are open to the rest of that process (its retrievers and chains)."""
    require(settings, [settings.collection], user)
    collections = {name: users for name, users in settings.access.collections.items() if user not in users}
    return settings.model_copy(update={"access": settings.access.model_copy(update={"collections": collections})})
