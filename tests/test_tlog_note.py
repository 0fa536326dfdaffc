"""C2SP signed notes and checkpoints: published known answers, round trips, every refusal.

Known answers (``tests/fixtures/tlog/note/``, sources in its README): the keys and notes of Go's
``golang.org/x/mod/sumdb/note`` tests, the test keys of transparency-dev/formats, two real
``sum.golang.org`` checkpoints (one co-signed by three test witnesses), sigsum-go's checkpoint,
the examples of the C2SP signed-note and tlog-checkpoint specifications, and a Rekor (ECDSA)
checkpoint. Ed25519 signatures are deterministic, so signing the published texts with the
published private keys must give the published notes byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mlgov import keyfile
from mlgov.tlog.note import (
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    NoteSignature,
    OpenedNote,
    Signer,
    Verifier,
    key_hash,
    load_or_create_signer,
    open_note,
    sign_note,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tlog" / "note"
KEYS: dict[str, Any] = json.loads((FIXTURES / "keys.json").read_text(encoding="utf-8"))

PETER_VK = KEYS["PeterNeumann"]["verifier"]
PETER_SK = KEYS["PeterNeumann"]["private"]
ENOCH_VK = KEYS["EnochRoot"]["verifier"]
SUMDB_VK = KEYS["sum.golang.org"]["verifier"]

TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)


def _note(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


def _sig(line: str) -> NoteSignature:
    name, _, encoded = line.rstrip("\n")[2:].partition(" ")
    raw = base64.b64decode(encoded)
    return NoteSignature(name, raw[:4], raw[4:])


@pytest.fixture(scope="module")
def peter() -> Verifier:
    return Verifier.from_string(PETER_VK)


@pytest.fixture(scope="module")
def enoch() -> Verifier:
    return Verifier.from_string(ENOCH_VK)


# -- keys: known answers -----------------------------------------------------------------------


def test_go_verifier_key(peter: Verifier) -> None:
    assert peter.name == "PeterNeumann"
    assert peter.key_hash == bytes.fromhex("c74f20a3")
    assert len(peter.public_key) == 32
    assert peter.key_string() == PETER_VK
    assert key_hash("PeterNeumann", peter.public_key) == bytes.fromhex("c74f20a3")


def test_go_signer_key(peter: Verifier) -> None:
    signer = Signer.from_key_string(PETER_SK)
    assert signer.name == "PeterNeumann"
    assert signer.key_hash == bytes.fromhex("c74f20a3")
    assert signer.key_string() == PETER_SK
    assert signer.verifier() == peter
    assert signer.verifier().key_string() == PETER_VK
    assert PETER_SK not in repr(signer)
    assert "AYEKFALV" not in repr(signer)


@pytest.mark.parametrize("name", ["Log", "Known", "KnownAgain", "Unknown", "PeterNeumann"])
def test_published_key_pairs_derive_their_verifier_keys(name: str) -> None:
    pair = KEYS[name]
    signer = Signer.from_key_string(pair["private"])
    assert signer.verifier().key_string() == pair["verifier"]
    assert signer.key_string() == pair["private"]
    assert Verifier.from_string(pair["verifier"]) == signer.verifier()


@pytest.mark.parametrize(
    "name", ["EnochRoot", "sum.golang.org", "monkeys", "bananas", "witness", "example.com/foo"]
)
def test_published_verifier_keys_round_trip(name: str) -> None:
    vkey = KEYS[name]["verifier"]
    verifier = Verifier.from_string(vkey)
    assert verifier.name == name
    assert verifier.key_string() == vkey
    assert Verifier.from_public_key(name, verifier.public_key) == verifier


def test_uppercase_key_hash_is_accepted_like_go(peter: Verifier) -> None:
    upper = PETER_VK.replace("c74f20a3", "C74F20A3")
    assert Verifier.from_string(upper) == peter
    assert Verifier.from_string(upper).key_string() == PETER_VK


def test_generated_keys_are_self_consistent() -> None:
    signer = Signer.generate("EnochRoot")
    verifier = Verifier.from_string(signer.verifier().key_string())
    again = Signer.from_key_string(signer.key_string())
    assert again.verifier() == verifier == signer.verifier()
    assert signer.key_hash == key_hash("EnochRoot", verifier.public_key)
    message = bytearray(b"hi")
    sig = bytearray(signer.sign(bytes(message)))
    assert len(sig) == 64
    assert verifier.verify(bytes(message), bytes(sig))
    sig[0] ^= 1
    assert not verifier.verify(bytes(message), bytes(sig))
    sig[0] ^= 1
    message[0] ^= 1
    assert not verifier.verify(bytes(message), bytes(sig))
    assert not verifier.verify(b"hi", bytes(sig)[:63])
    assert not verifier.verify(b"hi", bytes(sig) + b"\x00")


def test_signer_from_an_existing_private_key() -> None:
    key = Ed25519PrivateKey.generate()
    signer = Signer("example.com/log", key)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signer.verifier().public_key == raw


# -- keys: refusals ----------------------------------------------------------------------------


def _adjusted_vkey(name: str, typed_key: bytes) -> str:
    digest = hashlib.sha256(name.encode() + b"\n" + typed_key).digest()
    return f"{name}+{digest[:4].hex()}+{base64.b64encode(typed_key).decode()}"


PETER_TYPED_KEY = base64.b64decode(PETER_VK.split("+", 2)[2])


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("", "malformed verifier key"),
        ("PeterNeumann", "malformed verifier key"),
        ("PeterNeumann+c74f20a3", "malformed verifier key"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "is empty"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "space"),
        ("Peter\u00a0Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "U+00A0"),
        ("Peter\u3000+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "U+3000"),
        ("Peter\x01+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "control"),
        ("Peter\ud800+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "UTF-8"),
        ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hexadecimal"),
        ("PeterNeumann+c74f20a3a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hexadecimal"),
        ("PeterNeumann+c74f20ag+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hexadecimal"),
        ("PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 hexadecimal"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match"),
        ("PeterNeumann+c74f20a3+", "base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n", "base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=", "base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKq iBfsVkmqq/LDE4izWy10TW", "base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW", "base64"),
        # Go's two: a wrong-length key and an unknown algorithm, each with its hash adjusted.
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "base64",
        ),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "0x65"),
        (_adjusted_vkey("PeterNeumann", PETER_TYPED_KEY[:-3]), "32 bytes, not 29"),
        (_adjusted_vkey("PeterNeumann", PETER_TYPED_KEY + b"\0\0\0"), "32 bytes, not 35"),
        (_adjusted_vkey("PeterNeumann", b"\x01"), "32 bytes, not 0"),
        (KEYS["rekor.sigstore.dev"]["verifier"], "algorithm 0x02 is not supported"),
        (PETER_SK, "private key"),
    ],
)
def test_bad_verifier_keys(vkey: str, message: str) -> None:
    with pytest.raises(NoteError, match="^.*" + message.replace("+", r"\+")):
        Verifier.from_string(vkey)


def test_every_go_mangling_of_the_verifier_key_is_refused() -> None:
    # golang/mod sumdb/note/note_test.go TestNewVerifier: every proper substring, every byte + 1.
    for i in range(len(PETER_VK) + 1):
        for j in range(i + 1, len(PETER_VK) + 1):
            if (i, j) != (0, len(PETER_VK)):
                with pytest.raises(NoteError):
                    Verifier.from_string(PETER_VK[i:j])
    for i, char in enumerate(PETER_VK):
        with pytest.raises(NoteError):
            Verifier.from_string(PETER_VK[:i] + chr(ord(char) + 1) + PETER_VK[i + 1 :])


def test_every_go_mangling_of_the_private_key_is_refused_without_leaking_it() -> None:
    secret = PETER_SK.rsplit("+", 1)[1]
    variants = [
        PETER_SK[i:j]
        for i in range(len(PETER_SK) + 1)
        for j in range(i + 1, len(PETER_SK) + 1)
        if (i, j) != (0, len(PETER_SK))
    ]
    variants += [PETER_SK[:i] + chr(ord(c) + 1) + PETER_SK[i + 1 :] for i, c in enumerate(PETER_SK)]
    for variant in variants:
        with pytest.raises(NoteError) as info:
            Signer.from_key_string(variant)
        assert secret[:12] not in str(info.value)
        assert secret[-12:] not in str(info.value)


@pytest.mark.parametrize(
    ("skey", "message"),
    [
        (PETER_VK, "does not start with PRIVATE\\+KEY\\+"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3", "malformed private key"),
        (
            "PRIVATE+KEY+Peter Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            "space",
        ),
        ("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "match"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "hex"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF", "base64"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AgEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "0x02"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXH", "32 bytes"),
    ],
)
def test_bad_private_keys(skey: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Signer.from_key_string(skey)


def test_verifier_fields_are_checked(peter: Verifier) -> None:
    with pytest.raises(NoteError, match="does not match"):
        Verifier("PeterNeumann", bytes.fromhex("c74f20a4"), peter.public_key)
    with pytest.raises(NoteError, match="32 bytes"):
        Verifier("PeterNeumann", peter.key_hash, peter.public_key[:31])
    with pytest.raises(NoteError, match="contains '\\+'"):
        Verifier("Peter+Neumann", peter.key_hash, peter.public_key)
    with pytest.raises(NoteError, match="32 bytes, not 31"):
        key_hash("PeterNeumann", peter.public_key[:31])
    with pytest.raises(NoteError, match="is empty"):
        key_hash("", peter.public_key)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\u2028b", "a\u200ab", "a\nb"])
def test_bad_signer_names(name: str) -> None:
    with pytest.raises(NoteError):
        Signer.generate(name)


def test_names_may_be_any_other_utf8() -> None:
    for name in ("example.com/log", "Se\u00f1or-1", "\u65e5\u672c", "a\u200bb", "\U0001f600"):
        signer = Signer.generate(name)
        assert Verifier.from_string(signer.verifier().key_string()).name == name


# -- notes: known answers ----------------------------------------------------------------------


def test_go_sign_known_answer() -> None:
    signer = Signer.from_key_string(PETER_SK)
    assert sign_note(TEXT, [signer]) == _note("go-peterneumann.note")
    assert _note("go-peterneumann.note") == TEXT + "\n" + PETER_SIG


def test_go_open_one_verified_one_not(peter: Verifier) -> None:
    opened = open_note(_note("go-peterneumann-enochroot.note"), [peter])
    assert opened == OpenedNote(TEXT, (_sig(PETER_SIG),), (_sig(ENOCH_SIG),))
    assert opened.verified[0].name == "PeterNeumann"
    assert opened.verified[0].key_hash == bytes.fromhex("c74f20a3")
    assert opened.unverified[0].key_hash == bytes.fromhex("af0cfe78")
    assert opened.verified[0].line() == PETER_SIG
    assert opened.unverified[0].line() == ENOCH_SIG


def test_go_open_both_verified(peter: Verifier, enoch: Verifier) -> None:
    msg = _note("go-peterneumann-enochroot.note")
    opened = open_note(msg, [peter, enoch])
    assert [s.name for s in opened.verified] == ["PeterNeumann", "EnochRoot"]
    assert opened.unverified == ()
    assert open_note(msg.encode("utf-8"), [enoch, peter]) == opened


def test_go_open_neither_verified() -> None:
    with pytest.raises(NoteError) as info:
        open_note(_note("go-peterneumann-enochroot.note"), [])
    assert str(info.value) == (
        "no signature from a known key (known: none; "
        "signed by: PeterNeumann+c74f20a3, EnochRoot+af0cfe78)"
    )


def test_go_duplicated_verifier(peter: Verifier, enoch: Verifier) -> None:
    with pytest.raises(NoteError, match=r"^ambiguous key EnochRoot\+af0cfe78"):
        open_note(TEXT + "\n" + ENOCH_SIG, [enoch, peter, enoch])
    # An ambiguous key that signed nothing does not matter.
    assert open_note(TEXT + "\n" + PETER_SIG, [enoch, peter, enoch]).verified == (_sig(PETER_SIG),)


def test_go_too_many_signatures(peter: Verifier) -> None:
    for verifiers in ([peter], []):
        with pytest.raises(NoteError, match="more than 100 signatures"):
            open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), verifiers)
    opened = open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [peter])
    assert opened.verified == (_sig(PETER_SIG),)


def test_at_least_16_signatures_are_accepted() -> None:
    signers = [Signer.generate(f"witness-{i}") for i in range(16)]
    signed = sign_note(TEXT, signers)
    opened = open_note(signed, [s.verifier() for s in signers])
    assert [s.name for s in opened.verified] == [s.name for s in signers]


def test_go_invalid_signature(peter: Verifier) -> None:
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match=r"^invalid signature for key PeterNeumann\+c74f20a3$"):
        open_note(TEXT + "\n" + bad, [peter])


def test_go_duplicated_verified_and_unverified_signatures(peter: Verifier) -> None:
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    msg = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = open_note(msg, [peter])
    assert opened.verified == (_sig(PETER_SIG),)
    assert opened.unverified == (_sig(ENOCH_SIG), _sig(enoch_abcd))


@pytest.mark.parametrize(
    "msg",
    [
        TEXT.encode(),
        (TEXT + "\n").encode(),
        (TEXT + "\n" + PETER_SIG[:-1]).encode(),
        b"\x01" + (TEXT + "\n" + PETER_SIG).encode(),
        b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
        (TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name")[:-1]).encode(),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(),
    ],
)
def test_go_malformed_notes(peter: Verifier, msg: bytes) -> None:
    with pytest.raises(NoteError, match=r"^malformed note"):
        open_note(msg, [peter])


def test_go_misnamed_or_rehashed_signatures_are_unknown(peter: Verifier) -> None:
    # Go's errMismatchedVerifier cases: with lookups by name and hash they are unknown keys.
    misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    wrong_hash = PETER_SIG.replace("x08g", "xxxx")
    for line in (misnamed, wrong_hash):
        with pytest.raises(NoteError, match=r"^no signature from a known key"):
            open_note(TEXT + "\n" + line, [peter])


def test_real_sumdb_checkpoints() -> None:
    sumdb = Verifier.from_string(SUMDB_VK)
    for name, size in (("sumdb-6476701.note", 6476701), ("sumdb-30055305.note", 30055305)):
        msg = _note(name)
        opened = open_note(msg, [sumdb])
        assert [s.name for s in opened.verified] == ["sum.golang.org"]
        checkpoint = Checkpoint.parse(opened.text)
        assert checkpoint.origin == "go.sum database tree"
        assert checkpoint.size == size
        assert len(checkpoint.root_hash) == 32
        assert checkpoint.extensions == ()
        assert checkpoint.body() == opened.text
        assert msg == opened.text + "\n" + opened.verified[0].line()


def test_real_sumdb_checkpoint_cosigned_by_witnesses() -> None:
    msg = _note("sumdb-6476701-cosigned.note")
    names = ["sum.golang.org", "monkeys", "bananas", "witness"]
    verifiers = [Verifier.from_string(KEYS[n]["verifier"]) for n in names]
    opened = open_note(msg, verifiers)
    assert [s.name for s in opened.verified] == names
    only_log = open_note(msg, verifiers[:1])
    assert [s.name for s in only_log.verified] == ["sum.golang.org"]
    assert [s.name for s in only_log.unverified] == names[1:]
    only_witness = open_note(msg, verifiers[3:])
    assert [s.name for s in only_witness.verified] == ["witness"]


def test_sigsum_checkpoint() -> None:
    seed = bytes.fromhex(KEYS["sigsum-test-log"]["ed25519_seed_hex"])
    signer = Signer("placeholder", Ed25519PrivateKey.from_private_bytes(seed))
    public_key = signer.verifier().public_key
    origin = "sigsum.org/v1/tree/" + hashlib.sha256(public_key).hexdigest()
    msg = _note("sigsum-checkpoint.note")
    opened = open_note(msg, [Verifier.from_public_key(origin, public_key)])
    assert opened.verified[0].name == origin
    checkpoint = Checkpoint.parse(opened.text)
    assert checkpoint == Checkpoint(origin, 10, bytes([28, 14, 71]) + bytes(29))
    # Same key and text, signed by us under the same name: the published note again.
    same = Signer(origin, Ed25519PrivateKey.from_private_bytes(seed))
    assert sign_note(checkpoint.body(), [same]) == msg


def test_c2sp_signed_note_v1_1_example() -> None:
    verifier = Verifier.from_string(KEYS["example.com/foo"]["verifier"])
    opened = open_note(_note("c2sp-signed-note-v1.1-example.note"), [verifier])
    assert opened.text == "This is an example message.\n"
    assert opened.verified[0].key_hash == bytes.fromhex("530d903a")


def test_c2sp_signed_note_example_has_a_blank_line_in_its_text(peter: Verifier) -> None:
    # The spec publishes no key for it: it parses, and its key is unknown.
    msg = _note("c2sp-signed-note-example.note")
    with pytest.raises(NoteError) as info:
        open_note(msg, [peter])
    assert "signed by: quasimodo.example/salvatore+367ba04b" in str(info.value)
    # The text runs to the LAST blank line: sign the same text ourselves and check.
    text = msg[: msg.rindex("\n\n") + 1]
    assert text.count("\n\n") == 1
    signer = Signer.generate("example.com/us")
    opened = open_note(sign_note(text, [signer]) + msg[len(text) + 1 :], [signer.verifier()])
    assert opened.text == text
    assert [(s.name, s.key_hash.hex()) for s in opened.unverified] == [
        ("quasimodo.example/salvatore", "367ba04b")
    ]


def test_c2sp_checkpoint_example_shares_a_key_id_but_not_a_name() -> None:
    msg = _note("c2sp-tlog-checkpoint-example.note")
    # Its signature carries the key ID of sum.golang.org (033de0ae) under another name: an
    # unknown key, which verifiers MUST ignore ("share a name or ID (but not both)").
    with pytest.raises(NoteError, match=r"signed by: example.com/behind-the-sofa\+033de0ae\)$"):
        open_note(msg, [Verifier.from_string(SUMDB_VK)])
    checkpoint = Checkpoint.parse(msg[: msg.rindex("\n\n") + 1])
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")


def test_ecdsa_signed_checkpoint_parses_as_unknown(peter: Verifier) -> None:
    msg = _note("rekor-ecdsa-checkpoint.note")
    with pytest.raises(NoteError, match=r"signed by: rekor\.sigstore\.dev\+c0d23d6a\)$"):
        open_note(msg, [peter])
    assert Checkpoint.parse(msg[: msg.rindex("\n\n") + 1]).size == 798034


# -- notes: round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "\n",
        "one line\n",
        "two\n\nparagraphs\n",
        "ends with a blank line\n\n",
        "\n\nleading blank lines\n",
        "non-ASCII: ed \u00e8 subito sera \u2014 \U0001f600\n",
        "DEL is not a C0 control: \x7f\n",
        "em dash lines in the text:\n\u2014 not a signature\n",
    ],
)
def test_round_trip(text: str) -> None:
    signers = [Signer.generate("example.com/a"), Signer.generate("example.com/b")]
    signed = sign_note(text, signers)
    opened = open_note(signed, [s.verifier() for s in signers])
    assert opened.text == text
    assert [s.name for s in opened.verified] == ["example.com/a", "example.com/b"]
    assert open_note(signed.encode("utf-8"), [signers[1].verifier()]).text == text


def test_two_keys_with_the_same_name() -> None:
    old, new = Signer.generate("example.com/log"), Signer.generate("example.com/log")
    signed = sign_note("rotating\n", [old, new])
    opened = open_note(signed, [new.verifier()])
    assert [s.key_hash for s in opened.verified] == [new.key_hash]
    assert [s.key_hash for s in opened.unverified] == [old.key_hash]


def test_every_signature_of_a_known_key_must_verify(peter: Verifier) -> None:
    # Stricter than Go, which checks only a key's first line: a bad second line fails too.
    forged = _sig(PETER_SIG)
    forged = NoteSignature(forged.name, forged.key_hash, bytes(64))
    for lines in (PETER_SIG + forged.line(), forged.line() + PETER_SIG):
        with pytest.raises(NoteError, match=r"^invalid signature for key PeterNeumann"):
            open_note(TEXT + "\n" + lines, [peter])


def test_signature_of_the_wrong_text_fails(peter: Verifier) -> None:
    with pytest.raises(NoteError, match=r"^invalid signature"):
        open_note(TEXT.replace("problem", "question") + "\n" + PETER_SIG, [peter])


def test_every_flipped_bit_is_detected(peter: Verifier) -> None:
    msg = _note("go-peterneumann.note").encode("utf-8")
    assert open_note(msg, [peter]).verified
    for index in range(len(msg)):
        for bit in range(8):
            mutated = bytearray(msg)
            mutated[index] ^= 1 << bit
            with pytest.raises(NoteError):
                open_note(bytes(mutated), [peter])


def test_every_flipped_bit_of_the_raw_signature_is_detected(peter: Verifier) -> None:
    sig = _sig(PETER_SIG)
    raw = sig.key_hash + sig.signature
    for index in range(len(raw)):
        for bit in range(8):
            mutated = bytearray(raw)
            mutated[index] ^= 1 << bit
            line = f"\u2014 PeterNeumann {base64.b64encode(bytes(mutated)).decode()}\n"
            with pytest.raises(NoteError):
                open_note(TEXT + "\n" + line, [peter])


def test_signatures_with_spare_base64_bits_are_refused(peter: Verifier) -> None:
    # "...JnAM=": the M carries two bits that must be zero; N sets one of them. Go would accept.
    spare = PETER_SIG.replace("JnAM=", "JnAN=")
    assert base64.b64decode(spare.split()[-1]) == base64.b64decode(PETER_SIG.split()[-1])
    with pytest.raises(NoteError, match="canonical base64"):
        open_note(TEXT + "\n" + spare, [peter])


# -- notes: refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (TEXT, "no blank line"),
        (TEXT + "\n", "no signature lines"),
        (TEXT + "\n" + PETER_SIG[:-1], "does not end with a newline"),
        (TEXT + "\n" + PETER_SIG + "\n", "no signature lines"),
        ("tab\there\n\n" + PETER_SIG, "control character U\\+0009 at offset 3"),
        ("cr\r\n\n" + PETER_SIG, "control character U\\+000D"),
        ("nul\x00\n\n" + PETER_SIG, "control character U\\+0000"),
        ("esc\x1b\n\n" + PETER_SIG, "control character U\\+001B"),
        ("lone \ud800\n\n" + PETER_SIG, "not valid UTF-8"),
        (TEXT + "\n" + PETER_SIG.replace("\u2014 ", "-- "), "does not start with an em dash"),
        (TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014"), "does not start with an em dash"),
        (TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2013 "), "does not start with an em dash"),
        (TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014  "), "key name '' is empty"),
        (TEXT + "\n" + PETER_SIG.replace("PeterNeumann ", "PeterNeumann"), "no space between"),
        (TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter+Neumann"), "contains '\\+'"),
        (TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter\u00a0Neumann"), "U\\+00A0"),
        (TEXT + "\n" + PETER_SIG.replace("=\n", "\n"), "canonical base64"),
        (TEXT + "\n" + PETER_SIG.replace("=\n", "= \n"), "canonical base64"),
        (TEXT + "\n" + PETER_SIG.replace("x08go/", "x08go_"), "canonical base64"),
        (TEXT + "\n\u2014 PeterNeumann AAAAAA==\n", "too short \\(4 bytes\\)"),
        (TEXT + "\n\u2014 PeterNeumann \n", "too short \\(0 bytes\\)"),
        (TEXT + "\n" + PETER_SIG + "\n" + PETER_SIG, "^invalid signature"),
    ],
)
def test_malformed_notes(peter: Verifier, msg: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        open_note(msg, [peter])


def test_note_signed_only_by_unknown_keys(peter: Verifier) -> None:
    stranger = Signer.generate("example.com/stranger")
    with pytest.raises(NoteError) as info:
        open_note(sign_note(TEXT, [stranger]), [peter])
    assert str(info.value) == (
        "no signature from a known key (known: PeterNeumann+c74f20a3; "
        f"signed by: example.com/stranger+{stranger.key_hash.hex()})"
    )


def test_unknown_key_sharing_the_name_or_the_hash_is_ignored(peter: Verifier) -> None:
    same_name = NoteSignature("PeterNeumann", b"\x00\x00\x00\x00", bytes(64)).line()
    same_hash = NoteSignature("PeterNeuman", bytes.fromhex("c74f20a3"), bytes(64)).line()
    opened = open_note(TEXT + "\n" + same_name + same_hash + PETER_SIG, [peter])
    assert opened.verified == (_sig(PETER_SIG),)
    assert [s.name for s in opened.unverified] == ["PeterNeumann", "PeterNeuman"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must end with a newline"),
        ("no newline", "must end with a newline"),
        ("tab\t\n", "control character U\\+0009"),
        ("cr\r\n", "control character U\\+000D"),
        ("\ud800\n", "not valid UTF-8"),
    ],
)
def test_sign_note_refuses_texts_it_could_not_open(text: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        sign_note(text, [Signer.generate("a")])


def test_sign_note_refuses_bad_signer_lists() -> None:
    signer = Signer.generate("a")
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note(TEXT, [])
    with pytest.raises(NoteError, match=r"signer a\+[0-9a-f]{8} is given twice"):
        sign_note(TEXT, [signer, Signer.from_key_string(signer.key_string())])
    many = [Signer.generate(f"w{i}") for i in range(MAX_SIGNATURES + 1)]
    with pytest.raises(NoteError, match="at most 100"):
        sign_note(TEXT, many)
    assert len(open_note(sign_note(TEXT, many[:100]), [many[99].verifier()]).unverified) == 99


# -- checkpoints -------------------------------------------------------------------------------

ROOT = hashlib.sha256(b"root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    "checkpoint",
    [
        Checkpoint("example.com/log", 0, ROOT),
        Checkpoint("example.com/log", 1, ROOT),
        Checkpoint("go.sum database tree", 2**64 - 1, ROOT),
        Checkpoint("example.com/log", 42, ROOT, ("ext one", "ext+two \u00e8")),
    ],
)
def test_checkpoint_round_trip(checkpoint: Checkpoint) -> None:
    body = checkpoint.body()
    assert Checkpoint.parse(body) == checkpoint
    signer = Signer.generate("example.com/log")
    opened = open_note(sign_note(body, [signer]), [signer.verifier()])
    assert Checkpoint.parse(opened.text) == checkpoint


def test_checkpoint_body_layout() -> None:
    assert Checkpoint("o", 7, ROOT, ("x",)).body() == f"o\n7\n{ROOT_B64}\nx\n"
    assert Checkpoint("o", 7, ROOT, ["x"]).extensions == ("x",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"o\n1\n{ROOT_B64}", "end with a newline"),
        ("o\n1\n", "2 line\\(s\\)"),
        ("Head\n9944\n", "2 line\\(s\\)"),
        ("\n", "1 line\\(s\\)"),
        (f"\n1\n{ROOT_B64}\n", "origin line is empty"),
        (f"o\n01\n{ROOT_B64}\n", "leading zeros"),
        (f"o\n00\n{ROOT_B64}\n", "leading zeros"),
        (f"o\n-1\n{ROOT_B64}\n", "decimal"),
        (f"o\n-34\n{ROOT_B64}\n", "decimal"),
        (f"o\n+1\n{ROOT_B64}\n", "decimal"),
        (f"o\n 1\n{ROOT_B64}\n", "decimal"),
        (f"o\n1.0\n{ROOT_B64}\n", "decimal"),
        (f"o\n0x10\n{ROOT_B64}\n", "decimal"),
        (f"o\n1_000\n{ROOT_B64}\n", "decimal"),
        (f"o\n\uff11\n{ROOT_B64}\n", "decimal"),
        (f"o\nbananas\n{ROOT_B64}\n", "decimal"),
        (f"o\n\n{ROOT_B64}\n", "decimal"),
        (f"o\n{2**64}\n{ROOT_B64}\n", "more than 2\\*\\*64-1"),
        (f"o\n3438945738945739845734895735\n{ROOT_B64}\n", "decimal"),
        ("o\n1\nThisIsn'tBase64\n", "root hash"),
        ("o\n1\nYmFuYW5hcw==\n", "root hash"),  # 7 bytes
        (f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "root hash"),
        (f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "root hash"),
        (f"o\n1\n{ROOT_B64.rstrip('=')}\n", "root hash"),
        (f"o\n1\n{ROOT_B64[:-2]}J=\n", "root hash"),
        (f"o\n1\n {ROOT_B64}\n", "root hash"),
        (f"o\n1\n\n{ROOT_B64}\n", "root hash"),
        (f"o\n1\n{ROOT_B64}\n\n", "extension line 0 is empty"),
        (f"o\n1\n{ROOT_B64}\nx\n\ny\n", "extension line 1 is empty"),
        (f"o\tp\n1\n{ROOT_B64}\n", "control character"),
        (f"o\n1\n{ROOT_B64}\nx\ty\n", "control character"),
    ],
)
def test_bad_checkpoints(text: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(text)


def test_non_canonical_root_is_refused() -> None:
    # 32 bytes end in a 3-character group whose last character carries two spare bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    flipped = alphabet[alphabet.index(ROOT_B64[-2]) ^ 1]
    spare = ROOT_B64[:-2] + flipped + "="
    assert base64.b64decode(spare) == ROOT
    with pytest.raises(NoteError, match="root hash"):
        Checkpoint.parse(f"o\n1\n{spare}\n")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": ""}, "origin must be a non-empty str"),
        ({"origin": "a\nb"}, "one line"),
        ({"origin": "a\x00b"}, "control character"),
        ({"size": -1}, "size must be an int"),
        ({"size": 2**64}, "size must be an int"),
        ({"size": True}, "size must be an int"),
        ({"size": 1.0}, "size must be an int"),
        ({"root_hash": bytes(31)}, "32 bytes"),
        ({"root_hash": "x" * 32}, "32 bytes"),
        ({"extensions": ("",)}, "extension 0"),
        ({"extensions": ("a", "b\nc")}, "extension 1"),
        ({"extensions": ("a\rb",)}, "control character"),
    ],
)
def test_checkpoint_fields_are_checked(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"origin": "o", "size": 1, "root_hash": ROOT, **kwargs}
    with pytest.raises(NoteError, match=message):
        Checkpoint(**fields)


# -- key files ---------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_load_or_create_signer_creates_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "signing.key"
    signer = load_or_create_signer(path, "example.com/log")
    assert signer.name == "example.com/log"
    assert path.read_text(encoding="utf-8") == signer.key_string() + "\n"
    if os.name == "posix":
        assert _mode(path) == 0o600
    again = load_or_create_signer(path, "some-other-name")  # the name only names new keys
    assert again.key_string() == signer.key_string()
    assert sorted(p.name for p in path.parent.iterdir()) == ["signing.key"]


def test_load_or_create_signer_loads_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    path.write_text(PETER_SK + "\r\n", encoding="utf-8")
    assert load_or_create_signer(path, "ignored").key_string() == PETER_SK


@pytest.mark.parametrize(
    "content", [b"", b"not a key\n", PETER_VK.encode(), b"\xff\xfe", PETER_SK[:-1].encode()]
)
def test_load_or_create_signer_refuses_a_bad_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "signing.key"
    path.write_bytes(content)
    with pytest.raises(NoteError, match=str(path).replace("\\", "\\\\")):
        load_or_create_signer(path, "example.com/log")
    assert path.read_bytes() == content  # left alone


def test_load_or_create_signer_refuses_a_bad_name_before_writing(tmp_path: Path) -> None:
    with pytest.raises(NoteError):
        load_or_create_signer(tmp_path / "keys" / "signing.key", "bad name")
    assert not (tmp_path / "keys" / "signing.key").exists()


def test_load_or_create_signer_keeps_the_key_of_a_concurrent_creator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "signing.key"
    winner = Signer.generate("winner")
    real_generate = Signer.generate

    def generate_after_the_other_process_won(name: str) -> Signer:
        path.write_text(winner.key_string() + "\n", encoding="utf-8")
        return real_generate(name)

    monkeypatch.setattr(Signer, "generate", generate_after_the_other_process_won)
    got = load_or_create_signer(path, "loser")
    assert got.key_string() == winner.key_string()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.key"]


def test_load_or_create_signer_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: object, dst: object) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(keyfile.os, "link", no_link)
    path = tmp_path / "signing.key"
    signer = load_or_create_signer(path, "example.com/log")
    assert load_or_create_signer(path, "x").key_string() == signer.key_string()
    if os.name == "posix":
        assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.key"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_load_or_create_signer_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "signing.key"
        load_or_create_signer(path, "example.com/log")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
