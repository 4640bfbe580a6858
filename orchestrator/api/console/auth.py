"""The console's login and sessions, sans-I/O: which token opens what, signed session cookies, CSRF tokens.

A session is a cookie ``<payload>.<mac>``: the payload (base64url JSON: the kind of token that opened it, when it
was issued, when it expires, a random nonce) is signed with HMAC-SHA256 under a key derived from a random
per-process secret and the token that opened it — so a session ends when it expires, when the orchestrator
restarts, and when that token is changed. Nothing in the cookie reveals a token, and the key cannot be guessed
offline from a cookie even for a short token (the process secret is 32 random bytes). The CSRF token of a
session is an HMAC of its nonce under the same key: a form can only carry it when it was rendered for that
session. Every comparison is constant-time (:func:`hmac.compare_digest`). Time is passed in (``now``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Literal

Kind = Literal["console", "read", "write"]
KINDS: tuple[Kind, ...] = ("write", "read", "console")
#: what a kind of token may do in the console: ``write`` (the API token) may hang calls up, the others only look
WRITE_KINDS: frozenset[str] = frozenset({"write"})
#: a session lasts this long after its login
SESSION_SECONDS = 8 * 3600
#: a login form must be sent within this long of being shown
LOGIN_SECONDS = 15 * 60
#: cookies longer than this are not even parsed
MAX_COOKIE = 512


@dataclass(frozen=True)
class Session:
    """A verified console session."""

    kind: Kind
    issued: float
    expires: float
    nonce: str

    @property
    def can_write(self) -> bool:
        """True when the session was opened with the API's write token: it may hang calls up."""
        return self.kind in WRITE_KINDS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Keys:
    """The tokens that open the console, and the keys that sign its sessions.

    ``tokens`` maps a kind to its token (kinds without a token are absent). ``secret`` is the per-process secret
    (random by default: sessions do not outlive the process).
    """

    def __init__(self, tokens: dict[Kind, str], secret: bytes | None = None) -> None:
        self._tokens: dict[Kind, bytes] = {k: v.encode() for k, v in tokens.items() if v}
        secret = secret if secret is not None else secrets.token_bytes(32)
        self._keys = {
            kind: hmac.new(
                secret, b"sipagent console session v1\0" + kind.encode() + b"\0" + token, hashlib.sha256
            ).digest()
            for kind, token in self._tokens.items()
        }
        self._login_key = hmac.new(secret, b"sipagent console login v1", hashlib.sha256).digest()

    @property
    def enabled(self) -> bool:
        """True when at least one token can open the console."""
        return bool(self._tokens)

    def kind_of(self, presented: str) -> Kind | None:
        """Which token ``presented`` is (None: none of them). Every token is compared, each in constant time."""
        given = presented.encode("utf-8", "replace")
        found: Kind | None = None
        for kind in KINDS:
            token = self._tokens.get(kind)
            # compare against every configured token, whatever matched before: the time does not say which
            if token is not None and hmac.compare_digest(given, token) and found is None:
                found = kind
        return found

    # -- sessions ---------------------------------------------------------------------------------------
    def issue(self, kind: Kind, now: float, seconds: int = SESSION_SECONDS) -> str:
        """A signed session cookie value for a login with a ``kind`` token."""
        payload = {"k": kind, "i": int(now), "e": int(now) + seconds, "n": secrets.token_urlsafe(16)}
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{_b64(self._mac(kind, body.encode()))}"

    def verify(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie value stands for, or None: missing, malformed, forged, for a changed token, expired."""
        if not cookie or len(cookie) > MAX_COOKIE or cookie.count(".") != 1:
            return None
        body, _, mac = cookie.partition(".")
        try:
            payload = json.loads(_unb64(body))
            presented = _unb64(mac)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if not isinstance(payload, dict):
            return None
        kind, issued, expires, nonce = payload.get("k"), payload.get("i"), payload.get("e"), payload.get("n")
        if kind not in self._keys or not isinstance(nonce, str):
            return None
        if not hmac.compare_digest(presented, self._mac(kind, body.encode())):
            return None
        if not isinstance(issued, int) or not isinstance(expires, int) or not issued <= now < expires:
            return None
        return Session(kind, float(issued), float(expires), nonce)

    def _mac(self, kind: Kind, data: bytes) -> bytes:
        return hmac.new(self._keys[kind], data, hashlib.sha256).digest()

    # -- CSRF -----------------------------------------------------------------------------------------------
    def csrf(self, session: Session) -> str:
        """The session's CSRF token (rendered into its forms)."""
        return _b64(self._mac(session.kind, b"csrf\0" + session.nonce.encode())[:24])

    def check_csrf(self, session: Session, presented: str | None) -> bool:
        """True when ``presented`` is the session's CSRF token."""
        return bool(presented) and hmac.compare_digest(
            (presented or "").encode("utf-8", "replace"), self.csrf(session).encode()
        )

    # -- the login form's own CSRF token (a session does not exist yet: double submit, cookie + field) ----------
    def login_nonce(self, now: float) -> str:
        """A value for the login form's hidden field and its cookie: a random nonce, its time, their MAC."""
        body = f"{secrets.token_urlsafe(16)}:{int(now)}"
        return f"{body}:{_b64(hmac.new(self._login_key, body.encode(), hashlib.sha256).digest()[:18])}"

    def check_login_nonce(self, field: str | None, cookie: str | None, now: float) -> bool:
        """True when the form's nonce is the one its cookie holds, this process made it, and it is recent."""
        if not field or not cookie or len(field) > 128 or not hmac.compare_digest(field.encode(), cookie.encode()):
            return False
        body, _, mac = field.rpartition(":")
        expected = _b64(hmac.new(self._login_key, body.encode(), hashlib.sha256).digest()[:18])
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return False
        stamp = body.rpartition(":")[2]
        return stamp.isdigit() and 0 <= now - int(stamp) < LOGIN_SECONDS


def same_origin(origin: str | None, sec_fetch_site: str | None, host: str | None, scheme: str) -> bool:
    """Whether a state-changing request comes from the console's own pages.

    Browsers send ``Origin`` with every POST (and ``Sec-Fetch-Site``); a request from another site is refused
    even before its CSRF token is looked at. A request with neither header (a script, not a browser) is judged by
    its token alone.
    """
    if sec_fetch_site is not None and sec_fetch_site not in ("same-origin", "none"):
        return False
    if origin is None:
        return True
    return bool(host) and origin == f"{scheme}://{host}"
