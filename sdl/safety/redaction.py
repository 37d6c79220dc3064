"""Keeping credentials out of logs, MLflow params/tags and written reports.

:func:`redact` masks, in any string: the user-info of URLs (``http://user:secret@host`` ->
``http://***@host``), the values of credential-like query parameters (``?token=...``,
``X-Amz-Signature=...``), and the values of credential environment variables that are set
(``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_TRACKING_TOKEN``, ``*_PASSWORD``, ...) wherever they
occur. :func:`redact_mapping` also masks every value whose key looks like a credential
(``secret``, ``password``, ``token``, ``api_key``, ...). Only the standard library is used,
so any module may call it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/?#@\s]+)@")
_QUERY_PARAMETER = re.compile(r"(?P<name>[?&;][A-Za-z0-9_.\-]+=)(?P<value>[^&;#\s'\"]+)")
_SECRET_TOKENS = {
    "secret", "secrets", "password", "passwd", "pwd", "passphrase", "token", "tokens", "credential",
    "credentials", "apikey", "auth", "authorization", "signature", "sig", "cookie",
}
_SECRET_PAIRS = {"apikey", "accesskey", "privatekey", "secretkey", "sessionkey"}
_NOT_SECRETS = {"PWD", "OLDPWD"}  # the shell's working directories, not passwords
_MIN_SECRET_LENGTH = 6  # shorter values ("test", "1") would mask ordinary words


def is_secret_key(key: str) -> bool:
    """Whether a parameter, query or variable name looks like it holds a credential: one of
    its words (split on non-alphanumerics and camelCase) is ``secret``, ``password``,
    ``token``, ``credential``, ``auth``, ``signature``..., or two adjacent words make
    ``api key``, ``access key``, ``private key``, ``secret key`` or ``session key``. A plain
    ``key`` (an S3 object key) is not a credential."""
    if str(key).upper() in _NOT_SECRETS:
        return False
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", str(key))]
    return any(w in _SECRET_TOKENS for w in words) or any(a + b in _SECRET_PAIRS for a, b in itertools.pairwise(words))


def _secret_env_values() -> list[str]:
    values = {v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= _MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)  # longest first: a secret containing another


def _mask_query(match: re.Match[str]) -> str:
    name = match.group("name")
    return f"{name}{MASK}" if is_secret_key(name[1:-1]) else match.group(0)


def redact(value: Any) -> Any:
    """``value`` with credentials masked when it is a string; other values as they are."""
    if not isinstance(value, str):
        return value
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", value)
    text = _QUERY_PARAMETER.sub(_mask_query, text)
    for secret in _secret_env_values():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a (possibly nested) mapping with credential-like keys' values masked and
    every string value passed through :func:`redact`."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        last = str(key).rsplit(".", 1)[-1]
        if is_secret_key(last) and value not in (None, "", False):
            out[key] = MASK
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif isinstance(value, list | tuple):
            out[key] = type(value)(redact(v) if not isinstance(v, Mapping) else redact_mapping(v) for v in value)
        else:
            out[key] = redact(value)
    return out
