"""Credentials, recognised by what they are, so that none enters a config, params.json, an
artifact key or a manifest.

Whatever a stage is keyed by is written in plain text next to its outputs (and shared with the
results). So a secret is refused wherever it sits in a tree of options, not only under the names
one backend happens to use: an option whose name says it holds a secret (a password, token, API
key, private key, Authorization header, ...), a user name and password in a URL
(`https://user:password@host/...`), a secret in a URL's query (`?access_token=...`, a signed
URL's signature) and the key of an Azure connection string. fsspec's backends read credentials
from the environment and their own files instead (AWS_ACCESS_KEY_ID, ~/.aws,
GOOGLE_APPLICATION_CREDENTIALS, ~/.netrc for https, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Names, lowercased with everything but letters and digits removed (so "AccountKey",
# "account_key" and "Account-Key" are one name), that hold a secret whatever their value.
SECRET_NAMES = frozenset({
    "key", "secret", "token", "password", "passwd", "passphrase", "username", "auth",
    "authorization", "proxyauthorization", "cookie", "credential", "credentials", "sig",
    "signature", "connectionstring", "sastoken", "accesskeyid", "awsaccesskeyid",
    "xamzcredential", "xgoogcredential",
})
# Endings of such names: client_secret, db_password, hf_token, x_api_key, private_key, ...
SECRET_ENDINGS = ("secret", "password", "passwd", "token", "apikey", "accesskey", "secretkey",
                  "accountkey", "privatekey", "privatekeyid", "credentials", "signature",
                  "sharedaccesskey")
# gcsfs's `token` may name a way to find credentials rather than hold one.
TOKEN_MODES = frozenset({"anon", "google_default", "cache", "cloud", "browser"})
_SCHEME_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#@\s]+)@")
_QUERY_NAME = re.compile(r"[?&]([^=&#\s]+)=")
_CONNECTION_FIELD = re.compile(r"(?:^|;)\s*([A-Za-z][A-Za-z0-9 _-]*)=")
_PRIVATE_KEY = "PRIVATE KEY-----"


FROM_THE_ENVIRONMENT = ("Let the backend read them from the environment instead (e.g. "
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                        "GOOGLE_APPLICATION_CREDENTIALS, or ~/.netrc for https).")


class CredentialError(ValueError):
    """A credential reached a place that is written in plain text."""


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def is_secret_name(name: str) -> bool:
    """Whether an option called `name` holds a secret (by the name alone)."""
    normal = _normal(name)
    return normal in SECRET_NAMES or normal.endswith(SECRET_ENDINGS)


def _holds_nothing(name: str, value: Any) -> bool:
    """A secret-named option that is unset, a switch, or gcsfs's way to find credentials."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value):
        return True
    return _normal(name) == "token" and isinstance(value, str) and value in TOKEN_MODES


def secret_in_text(text: str) -> str | None:
    """What secret a string holds, in words, or None: a user name or password in a URL, a
    secret query parameter, a connection string's key, a PEM private key."""
    userinfo = _SCHEME_USERINFO.search(text)
    if userinfo:
        return ("a user name and password in a URL (user:password@)" if ":" in userinfo.group(1)
                else "a user name in a URL (user@)")
    for match in _QUERY_NAME.finditer(text):
        if is_secret_name(match.group(1)):
            return f"a secret in a URL's query ({match.group(1)}=)"
    if ";" in text or text.count("=") == 1:
        for match in _CONNECTION_FIELD.finditer(text):
            if is_secret_name(match.group(1)):
                return f"a secret in a connection string ({match.group(1).strip()}=)"
    if _PRIVATE_KEY in text:
        return "a private key"
    return None


def find_credentials(value: Any, where: str) -> list[tuple[str, str]]:
    """Every credential in a tree of mappings, lists and strings, as (dotted place, what it is);
    a secret-named entry is reported whole (a service-account dict under `token` is one
    credential), not searched inside."""
    found: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for name, item in value.items():
            place = f"{where}.{name}" if where else str(name)
            if is_secret_name(str(name)) and not _holds_nothing(str(name), item):
                found.append((place, f"a secret option ({name!r})"))
            else:
                found += find_credentials(item, place)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found += find_credentials(item, f"{where}.{index}" if where else str(index))
    elif isinstance(value, str):
        what = secret_in_text(value)
        if what:
            found.append((where, what))
    return found


def refuse_credentials(value: Any, where: str, destination: str) -> None:
    """Raise CredentialError naming the first credential in `value` (never the secret itself)."""
    found = find_credentials(value, where)
    if found:
        place, what = found[0]
        raise CredentialError(f"{place} holds {what}; credentials do not belong in {destination}. "
                              f"{FROM_THE_ENVIRONMENT}")


def without_credentials(value: Any) -> Any:
    """`value` with its credentials left out: secret-named entries and strings that hold a
    secret (a URL with user:password@, ...) are dropped; the rest is kept, nested entries too."""
    if isinstance(value, Mapping):
        return {name: without_credentials(item) for name, item in value.items()
                if not (is_secret_name(str(name)) and not _holds_nothing(str(name), item))
                and not (isinstance(item, str) and secret_in_text(item))}
    if isinstance(value, (list, tuple)):
        return [without_credentials(item) for item in value
                if not (isinstance(item, str) and secret_in_text(item))]
    return value


__all__ = ["FROM_THE_ENVIRONMENT", "CredentialError", "find_credentials", "is_secret_name", "refuse_credentials",
           "secret_in_text", "without_credentials"]
