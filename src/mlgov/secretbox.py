"""Encryption of secrets the server must be able to read again (webhook signing secrets).

Secrets that are only ever compared (API tokens, passwords) are hashed instead; a webhook secret
must be used to sign every delivery, so it is stored encrypted with AES-256-GCM under a key kept
outside the database: a file of 32 random bytes (base64 text), created on first start with mode
0600 next to the audit signing key. A copy of the database alone reveals no secret; a lost key
file makes the stored secrets unreadable (the webhooks must then be created again).

An encrypted blob is ``nonce (12 bytes) || ciphertext || tag (16 bytes)``. Every encryption is
bound to a *context* (authenticated, not stored), e.g. ``b"webhook:credit-alerts"``: a blob
copied to another row does not decrypt there.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mlgov import keyfile

__all__ = ["KEY_SIZE", "SecretBox", "SecretBoxError"]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


class SecretBoxError(ValueError):
    """A blob that does not decrypt: another key, another context, or altered bytes."""


class SecretBox:
    """AES-256-GCM with one key. Never shows the key in ``repr``."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"a secret box key is {KEY_SIZE} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @classmethod
    def generate(cls) -> SecretBox:
        return cls(secrets.token_bytes(KEY_SIZE))

    @classmethod
    def load_or_create(cls, path: Path) -> SecretBox:
        """The box whose key is stored in ``path``.

        If the file does not exist, a new random key is stored there first (mode 0600, parent
        directories created): written to a temporary file in the same directory, fsynced, then
        linked into place, so the file never holds a partial key and, when two processes race
        to create it, both end up with the one that got there first (as the audit signing key,
        :func:`mlgov.tlog.note.load_or_create_signer`)."""

        def create() -> tuple[SecretBox, str]:
            key = secrets.token_bytes(KEY_SIZE)
            return cls(key), base64.b64encode(key).decode("ascii")

        return keyfile.load_or_create(Path(path), lambda p: cls(_read_key(p)), create)

    def encrypt(self, plaintext: bytes, *, context: bytes) -> bytes:
        """``nonce || ciphertext || tag``, with ``context`` as authenticated data."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, bytes(plaintext), bytes(context))

    def decrypt(self, blob: bytes, *, context: bytes) -> bytes:
        """The plaintext of ``blob``; :class:`SecretBoxError` if it was encrypted under another
        key or context, or altered."""
        blob = bytes(blob)
        if len(blob) < NONCE_SIZE + TAG_SIZE:
            raise SecretBoxError("the encrypted secret is truncated")
        try:
            return self._aead.decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], bytes(context))
        except InvalidTag:
            raise SecretBoxError(
                "the secret does not decrypt: another secret key file, another context, or "
                "altered bytes"
            ) from None


def _read_key(path: Path) -> bytes:
    """The key in ``path``: base64 (as written here) or hex text of exactly 32 bytes."""
    raw = path.read_bytes()
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: the secret key file must hold {KEY_SIZE} bytes as base64 or hex text"
        ) from None
    key: bytes | None = None
    if len(text) == 2 * KEY_SIZE:
        with contextlib.suppress(ValueError):
            key = bytes.fromhex(text)
    if key is None:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != KEY_SIZE:
        found = f"{len(key)} bytes" if key is not None else "text that is neither base64 nor hex"
        raise ValueError(
            f"{path}: the secret key file must hold {KEY_SIZE} bytes as base64 or hex text, "
            f"found {found}"
        )
    return key
