"""C2SP signed notes and transparency-log checkpoints, with Ed25519 keys.

Specifications: https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint; the behaviour
follows their reference implementation, Go's ``golang.org/x/mod/sumdb/note``, whose keys and
notes (and real ``sum.golang.org`` checkpoints) are among the tests' known answers.

A signed note is a text ending in a newline, a blank line, then one or more signature lines::

    If you think cryptography is the answer to your problem,
    then you don't know what your problem is.

    — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK...

(the signature shortened here). Each signature line is an em dash (U+2014), a space, the key
name, a space, and the base64 of the 4-byte key hash followed by the signature of the text
(including its final newline). A key is named by a non-empty string without Unicode spaces or
``+``; its hash is the first four bytes of SHA-256(name || "\\n" || 0x01 || 32-byte Ed25519
public key). Keys travel as strings:

* verifier key: ``<name>+<hex8 hash>+<base64(0x01 || public key)>``
* private key: ``PRIVATE+KEY+<name>+<hex8 hash>+<base64(0x01 || 32-byte seed)>``

``open_note`` rejects (``NoteError``) a note that is not valid UTF-8, has an ASCII control
character other than newline, lacks the blank line or a final newline, has a malformed signature
line or more than 100 of them (Go's limit; the spec asks for at least 16), a signature line of a
known key (same name *and* hash) whose signature does not verify, a name and hash that match
more than one given verifier, or no signature from any given verifier. Lines of unknown keys
(name or hash differ from every verifier's) are returned unverified, as the spec requires.

Stricter than Go, on purpose: base64 must be canonical (padded, no stray bits; Go accepts
"spare" bits, so two spellings of one signature would both verify), every signature line of a
known key is verified (Go checks only the first per key), key names may not hold control
characters (no note could carry them), and ``sign_note`` refuses texts it could not open again
(control characters) and duplicate or missing signers.

A checkpoint (``Checkpoint``) is a note text of three or more lines: the log's origin, its size
in decimal, the base64 of its 32-byte RFC 6962 root hash, then optional non-empty extension
lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mlgov import keyfile

__all__ = [
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteError",
    "NoteSignature",
    "OpenedNote",
    "Signer",
    "Verifier",
    "key_hash",
    "load_or_create_signer",
    "open_note",
    "sign_note",
]

#: The most signature lines a note may carry (as Go's note.Open; the spec's minimum is 16).
MAX_SIGNATURES = 100

_ALG_ED25519 = 0x01
_KEY_HASH_SIZE = 4
_ED25519_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_SIG_PREFIX = "\u2014 "  # em dash, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_MAX_TREE_SIZE = 2**64 - 1

# Go's unicode.IsSpace: the Latin-1 spaces and every other White_Space character.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII control characters except newline
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A malformed key, note or checkpoint, or a note whose signatures do not check out."""


# -- helpers ----------------------------------------------------------------------------------


def _name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if "+" in name:
        return "contains '+'"
    for char in name:
        if char in _SPACES:
            return f"contains a space character (U+{ord(char):04X})"
        if char < " ":
            return f"contains a control character (U+{ord(char):04X})"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (lone surrogate)"
    return None


def _check_name(name: str, what: str = "key name") -> None:
    if not isinstance(name, str):
        raise NoteError(f"{what} must be a str, not {type(name).__name__}")
    problem = _name_problem(name)
    if problem is not None:
        raise NoteError(f"{what} {name!r} {problem}")


def _b64decode(text: str) -> bytes | None:
    """The bytes of canonical standard base64 (padded, no spare bits), else None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _hash_of(name: str, typed_key: bytes) -> bytes:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + typed_key).digest()
    return digest[:_KEY_HASH_SIZE]


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte hash of an Ed25519 key: SHA-256(name || "\\n" || 0x01 || public_key)[:4]."""
    _check_name(name)
    if len(public_key) != _ED25519_KEY_SIZE:
        raise NoteError(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
    return _hash_of(name, bytes([_ALG_ED25519]) + bytes(public_key))


def _key_id(name: str, hash4: bytes) -> str:
    return f"{name}+{hash4.hex()}"


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid UTF-8 (lone surrogate U+{ord(text[exc.start]):04X})"
    found = _CONTROL.search(text)
    if found is not None:
        return f"has a control character U+{ord(found.group()):04X} at offset {found.start()}"
    return None


# -- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 public key with its name: checks signatures made by one ``Signer``."""

    name: str
    key_hash: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _ED25519_KEY_SIZE:
            raise NoteError("an Ed25519 public key is 32 bytes")
        expected = key_hash(self.name, self.public_key)
        if self.key_hash != expected:
            raise NoteError(
                f"key hash {bytes(self.key_hash).hex()} of {self.name!r} does not match "
                f"its public key (expected {expected.hex()})"
            )

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        return cls(name, key_hash(name, public_key), bytes(public_key))

    @classmethod
    def from_string(cls, text: str) -> Verifier:
        """Parse a verifier key ``<name>+<hex8 hash>+<base64(0x01 || public key)>``."""
        if not isinstance(text, str):
            raise NoteError(f"a verifier key is a str, not {type(text).__name__}")
        if text.startswith(_PRIVATE_PREFIX):
            raise NoteError("this is a private key (PRIVATE+KEY+...), not a verifier key")
        name, sep1, rest = text.partition("+")
        hash_hex, sep2, key_b64 = rest.partition("+")
        if not (sep1 and sep2):
            raise NoteError(
                f"malformed verifier key {text!r}: expected <name>+<8 hex digits>+<base64 key>"
            )
        _check_name(name, "verifier key name")
        if not _HEX8.fullmatch(hash_hex):
            raise NoteError(f"verifier key hash {hash_hex!r} is not 8 hexadecimal digits")
        typed_key = _b64decode(key_b64)
        if not typed_key:
            raise NoteError(f"verifier key {key_b64!r} is not canonical base64 of a key")
        if typed_key[0] != _ALG_ED25519:
            raise NoteError(
                f"verifier key algorithm 0x{typed_key[0]:02x} is not supported (only Ed25519, 0x01)"
            )
        if len(typed_key) != 1 + _ED25519_KEY_SIZE:
            raise NoteError(f"an Ed25519 public key is 32 bytes, not {len(typed_key) - 1}")
        expected = _hash_of(name, typed_key)
        if bytes.fromhex(hash_hex) != expected:
            raise NoteError(
                f"verifier key hash {hash_hex} does not match the key of {name!r} "
                f"(expected {expected.hex()})"
            )
        return cls(name, expected, typed_key[1:])

    def key_string(self) -> str:
        return (
            f"{_key_id(self.name, self.key_hash)}+{_b64(bytes([_ALG_ED25519]) + self.public_key)}"
        )

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                bytes(signature), bytes(message)
            )
        except InvalidSignature:
            return False
        return True


class Signer:
    """An Ed25519 private key with its name. Keep its ``key_string()`` secret."""

    __slots__ = ("_key_hash", "_name", "_private_key", "_public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self._name = name
        self._private_key = private_key
        self._public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._key_hash = key_hash(name, self._public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_hash(self) -> bytes:
        return self._key_hash

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_key_string(cls, text: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex8 hash>+<base64(0x01 || seed)>``.

        Error messages never include the key material."""
        if not isinstance(text, str):
            raise NoteError(f"a private key is a str, not {type(text).__name__}")
        if not text.startswith(_PRIVATE_PREFIX):
            raise NoteError("malformed private key: it does not start with PRIVATE+KEY+")
        name, sep1, rest = text[len(_PRIVATE_PREFIX) :].partition("+")
        hash_hex, sep2, key_b64 = rest.partition("+")
        if not (sep1 and sep2):
            raise NoteError(
                "malformed private key: expected PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>"
            )
        _check_name(name, "private key name")
        if not _HEX8.fullmatch(hash_hex):
            raise NoteError(f"private key hash {hash_hex!r} is not 8 hexadecimal digits")
        typed_seed = _b64decode(key_b64)
        if not typed_seed:
            raise NoteError("malformed private key: the key is not canonical base64")
        if typed_seed[0] != _ALG_ED25519:
            raise NoteError(
                f"private key algorithm 0x{typed_seed[0]:02x} is not supported (only Ed25519)"
            )
        if len(typed_seed) != 1 + _ED25519_KEY_SIZE:
            raise NoteError("malformed private key: an Ed25519 seed is 32 bytes")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(typed_seed[1:]))
        if bytes.fromhex(hash_hex) != signer.key_hash:
            raise NoteError(
                f"private key hash {hash_hex} does not match the key of {name!r} "
                f"(expected {signer.key_hash.hex()})"
            )
        return signer

    def key_string(self) -> str:
        """The ``PRIVATE+KEY+...`` string (secret)."""
        seed = self._private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        typed_seed = _b64(bytes([_ALG_ED25519]) + seed)
        return f"{_PRIVATE_PREFIX}{_key_id(self._name, self._key_hash)}+{typed_seed}"

    def verifier(self) -> Verifier:
        return Verifier(self._name, self._key_hash, self._public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._private_key.sign(bytes(message))

    def __repr__(self) -> str:
        return f"Signer(name={self._name!r}, key_hash={self._key_hash.hex()!r})"


# -- notes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name and hash, and the signature (without the hash)."""

    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, newline included."""
        return f"{_SIG_PREFIX}{self.name} {_b64(self.key_hash + self.signature)}\n"


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures were checked: its text (final newline included), the signatures
    of given verifiers (all valid, one per key) and those of unknown keys (not checked)."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """The note of ``text`` signed by every signer, in order."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    problem = _text_problem(text)
    if problem is not None:
        raise NoteError(f"note text {problem}")
    if not signers:
        raise NoteError("a note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise NoteError(f"a note can carry at most {MAX_SIGNATURES} signatures")
    message = text.encode("utf-8")
    seen: set[tuple[str, bytes]] = set()
    lines = []
    for signer in signers:
        ident = (signer.name, signer.key_hash)
        if ident in seen:
            raise NoteError(f"signer {_key_id(*ident)} is given twice")
        seen.add(ident)
        lines.append(NoteSignature(signer.name, signer.key_hash, signer.sign(message)).line())
    return text + "\n" + "".join(lines)


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    where = f"malformed note: signature line {number}"
    if not line.startswith(_SIG_PREFIX):
        raise NoteError(f"{where} does not start with an em dash and a space")
    name, space, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not space:
        raise NoteError(f"{where} has no space between the key name and the signature")
    problem = _name_problem(name)
    if problem is not None:
        raise NoteError(f"{where}: key name {name!r} {problem}")
    raw = _b64decode(encoded)
    if raw is None:
        raise NoteError(f"{where}: the signature is not canonical base64")
    if len(raw) <= _KEY_HASH_SIZE:
        raise NoteError(f"{where}: the signature is too short ({len(raw)} bytes)")
    return NoteSignature(name, raw[:_KEY_HASH_SIZE], raw[_KEY_HASH_SIZE:])


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> OpenedNote:
    """Parse ``note`` and check its signatures against ``verifiers``.

    Returns the text with the verified and unverified signatures; ``NoteError`` if the note is
    malformed, if a signature of a known key fails, or if no known key signed it."""
    if isinstance(note, bytes | bytearray | memoryview):
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("malformed note: it is not valid UTF-8") from None
    problem = _text_problem(note)
    if problem is not None:
        raise NoteError(f"malformed note: it {problem}")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise NoteError("malformed note: no signature lines after the blank line")
    if not block.endswith("\n"):
        raise NoteError("malformed note: the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures ({len(lines)})")

    known: dict[tuple[str, bytes], list[Verifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_hash), []).append(verifier)

    message = text.encode("utf-8")
    verified: dict[tuple[str, bytes], NoteSignature] = {}
    unverified: dict[str, NoteSignature] = {}
    checked: set[str] = set()
    for number, line in enumerate(lines, start=1):
        sig = _parse_signature_line(line, number)
        ident = (sig.name, sig.key_hash)
        candidates = known.get(ident)
        if candidates is None:
            unverified.setdefault(line, sig)  # repeated identical lines count once
            continue
        if len(candidates) > 1:
            raise NoteError(f"ambiguous key {_key_id(*ident)}: {len(candidates)} verifiers match")
        if line in checked:
            continue
        if not candidates[0].verify(message, sig.signature):
            raise NoteError(f"invalid signature for key {_key_id(*ident)}")
        checked.add(line)
        verified.setdefault(ident, sig)

    if not verified:
        names = ", ".join(_key_id(*key) for key in known) or "none"
        found = ", ".join(_key_id(s.name, s.key_hash) for s in unverified.values())
        raise NoteError(f"no signature from a known key (known: {names}; signed by: {found})")
    return OpenedNote(text, tuple(verified.values()), tuple(unverified.values()))


# -- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A transparency-log checkpoint: the note text committing to a log's tree head."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise NoteError("checkpoint origin must be a non-empty str")
        if "\n" in self.origin:
            raise NoteError("checkpoint origin must be one line")
        problem = _text_problem(self.origin)
        if problem is not None:
            raise NoteError(f"checkpoint origin {problem}")
        if type(self.size) is not int or not 0 <= self.size <= _MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size must be an int from 0 to 2**64-1, not {self.size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != 32:
            raise NoteError("checkpoint root hash must be 32 bytes")
        if not isinstance(self.extensions, tuple):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        for index, line in enumerate(self.extensions):
            if not isinstance(line, str) or not line or "\n" in line:
                raise NoteError(f"checkpoint extension {index} must be one non-empty line")
            problem = _text_problem(line)
            if problem is not None:
                raise NoteError(f"checkpoint extension {index} {problem}")

    def body(self) -> str:
        """The note text: origin, size and base64 root hash, then the extensions, one a line."""
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body (the text of an opened note)."""
        if not text.endswith("\n"):
            raise NoteError("malformed checkpoint: it must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(
                f"malformed checkpoint: {len(lines)} line(s), "
                "expected origin, tree size and root hash"
            )
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise NoteError("malformed checkpoint: the origin line is empty")
        if len(size_text) > 20 or not _DECIMAL.fullmatch(size_text):
            raise NoteError(
                f"malformed checkpoint: tree size {size_text[:40]!r} is not a decimal number "
                "without leading zeros"
            )
        size = int(size_text)
        if size > _MAX_TREE_SIZE:
            raise NoteError(f"malformed checkpoint: tree size {size} is more than 2**64-1")
        root_hash = _b64decode(root_text)
        if root_hash is None or len(root_hash) != 32:
            raise NoteError(
                "malformed checkpoint: the root hash is not canonical base64 of 32 bytes"
            )
        for index, line in enumerate(extensions):
            if not line:
                raise NoteError(f"malformed checkpoint: extension line {index} is empty")
        return cls(origin, size, root_hash, tuple(extensions))


# -- key files --------------------------------------------------------------------------------


def _load_signer(path: Path) -> Signer:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError(f"{path}: the signing key file is not UTF-8 text") from None
    try:
        return Signer.from_key_string(text.strip())
    except NoteError as exc:
        raise NoteError(f"{path}: {exc}") from None


def load_or_create_signer(path: Path, name: str) -> Signer:
    """The signer whose private key string is stored in ``path``.

    If the file does not exist, a new key named ``name`` is generated and stored there (mode
    0600, parent directories created) first: written to a temporary file in the same directory,
    fsynced, then linked into place, so the file never holds a partial key and, when two
    processes race to create it, both end up with the one that got there first. ``name`` is
    used only to create a key: an existing file is loaded whatever its key is named."""

    def create() -> tuple[Signer, str]:
        signer = Signer.generate(name)
        return signer, signer.key_string()

    return keyfile.load_or_create(Path(path), _load_signer, create)
