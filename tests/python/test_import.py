"""Imported key material (BYOK) through boto3, wrapped client-side with
`cryptography` exactly as the AWS documentation describes: create an
EXTERNAL key, GetParametersForImport, ImportKeyMaterial with both
expiration models, DeleteImportedKeyMaterial and re-import, and the error
cases. Expiry itself needs time to pass; it is tested with an injected clock
in crates/keywarden/tests/clock/import.rs.
"""

from __future__ import annotations

import datetime
import os

import pytest
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from kw_helpers import KEY_ARN_RE, expect_error

OAEP_256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def external_key(kms) -> dict:
    meta = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
    assert meta["Origin"] == "EXTERNAL"
    assert meta["KeyState"] == "PendingImport"
    assert meta["Enabled"] is False
    return meta


def params(kms, key_id: str, algorithm: str = "RSAES_OAEP_SHA_256") -> dict:
    p = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048"
    )
    assert KEY_ARN_RE.match(p["KeyId"]), p["KeyId"]
    assert p["KeyId"].endswith(key_id)
    valid = p["ParametersValidTo"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=23) < valid <= datetime.timedelta(hours=24, minutes=5)
    return p


def wrap(p: dict, material: bytes, algorithm: str = "RSAES_OAEP_SHA_256") -> bytes:
    public = serialization.load_der_public_key(p["PublicKey"])
    if algorithm == "RSAES_OAEP_SHA_256":
        return public.encrypt(material, OAEP_256)
    assert algorithm == "RSA_AES_KEY_WRAP_SHA_256"
    ephemeral = os.urandom(32)
    return public.encrypt(ephemeral, OAEP_256) + keywrap.aes_key_wrap_with_padding(
        ephemeral, material
    )


def import_material(kms, key_id: str, material: bytes, algorithm="RSAES_OAEP_SHA_256", **extra):
    p = params(kms, key_id, algorithm)
    if not extra:
        extra = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    out = kms.import_key_material(
        KeyId=key_id,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p, material, algorithm),
        **extra,
    )
    assert out["KeyId"].endswith(key_id)
    return out


def round_trip(kms, key_id: str) -> bytes:
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"imported")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"imported"
    return blob


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256"])
def test_import_delete_reimport(kms, algorithm):
    key_id = external_key(kms)["KeyId"]
    expect_error("KMSInvalidStateException", kms.encrypt, KeyId=key_id, Plaintext=b"x")
    material = os.urandom(32)
    import_material(kms, key_id, material, algorithm)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled" and meta["Enabled"] is True
    assert meta["Origin"] == "EXTERNAL"
    assert meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert "ValidTo" not in meta
    blob = round_trip(kms, key_id)

    out = kms.delete_imported_key_material(KeyId=key_id)
    assert out["KeyId"].endswith(key_id)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingImport" and meta["Enabled"] is False
    assert "ExpirationModel" not in meta
    expect_error("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob)

    # The same material (under new parameters) brings old ciphertexts back.
    import_material(kms, key_id, material, algorithm)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"imported"

    # Other material never, whether the key has material or not.
    expect_error(
        "IncorrectKeyMaterialException", import_material, kms, key_id, os.urandom(32), algorithm
    )
    kms.delete_imported_key_material(KeyId=key_id)
    expect_error(
        "IncorrectKeyMaterialException", import_material, kms, key_id, os.urandom(32), algorithm
    )
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"


def test_expiring_material_shows_valid_to(kms):
    key_id = external_key(kms)["KeyId"]
    valid_to = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    import_material(
        kms, key_id, os.urandom(32), ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to
    )
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(meta["ValidTo"] - valid_to) < datetime.timedelta(seconds=1)
    round_trip(kms, key_id)
    # KEY_MATERIAL_EXPIRES is the default.
    other = external_key(kms)["KeyId"]
    import_material(kms, other, os.urandom(32), ValidTo=valid_to)
    assert kms.describe_key(KeyId=other)["KeyMetadata"]["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"


def test_import_errors(kms, server, account):
    key_id = external_key(kms)["KeyId"]
    other_id = external_key(kms)["KeyId"]
    p = params(kms, key_id)
    good = wrap(p, os.urandom(32))

    def attempt(key=key_id, token=p["ImportToken"], material=good):
        kms.import_key_material(
            KeyId=key,
            ImportToken=token,
            EncryptedKeyMaterial=material,
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )

    expect_error("InvalidImportTokenException", attempt, key=other_id)
    flipped = bytearray(p["ImportToken"])
    flipped[len(flipped) // 2] ^= 0x01
    expect_error("InvalidImportTokenException", attempt, token=bytes(flipped))
    expect_error("InvalidCiphertextException", attempt, material=os.urandom(256))
    expect_error("IncorrectKeyMaterialException", attempt, material=wrap(p, os.urandom(16)))
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    attempt()

    # Keys with generated material take no imports.
    generated = kms.create_key()["KeyMetadata"]["KeyId"]
    expect_error(
        "UnsupportedOperationException",
        kms.get_parameters_for_import,
        KeyId=generated,
        WrappingAlgorithm="RSAES_OAEP_SHA_256",
        WrappingKeySpec="RSA_2048",
    )
    expect_error("UnsupportedOperationException", kms.delete_imported_key_material, KeyId=generated)


def test_bad_input(server, account, kms):
    key_id = external_key(kms)["KeyId"]
    raw = server.client(account, parameter_validation=False)
    for algorithm, spec in [("RSAES_PKCS1_V1_5", "RSA_2048"), ("RSAES_OAEP_SHA_256", "SM2")]:
        expect_error(
            "UnsupportedOperationException",
            raw.get_parameters_for_import,
            KeyId=key_id,
            WrappingAlgorithm=algorithm,
            WrappingKeySpec=spec,
        )
    for algorithm, spec in [("RSA_OAEP", "RSA_2048"), ("RSAES_OAEP_SHA_256", "RSA_1024")]:
        expect_error(
            "ValidationException",
            raw.get_parameters_for_import,
            KeyId=key_id,
            WrappingAlgorithm=algorithm,
            WrappingKeySpec=spec,
        )
    expect_error("ValidationException", raw.get_parameters_for_import, KeyId=key_id)
    p = params(kms, key_id)
    material = wrap(p, os.urandom(32))
    expect_error(
        "ValidationException",
        raw.import_key_material,
        KeyId=key_id,
        ImportToken=p["ImportToken"],
    )
    expect_error(
        "ValidationException",
        raw.import_key_material,
        KeyId=key_id,
        EncryptedKeyMaterial=material,
    )
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    for extra in [
        {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ValidTo": later},
        {"ExpirationModel": "KEY_MATERIAL_EXPIRES"},
        {},
        {"ExpirationModel": "SOMETIMES"},
    ]:
        expect_error(
            "ValidationException",
            raw.import_key_material,
            KeyId=key_id,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=material,
            **extra,
        )
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"


# -- asymmetric and HMAC material (docs/key-specs.md "Imported material") -----

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402

from cryptography.hazmat.primitives import hmac as crypto_hmac  # noqa: E402


def pkcs8(private) -> bytes:
    return private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def spki(public) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def external_spec_key(kms, spec: str, usage: str) -> str:
    meta = kms.create_key(Origin="EXTERNAL", KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    assert meta["KeyState"] == "PendingImport" and meta["KeySpec"] == spec
    return meta["KeyId"]


@pytest.mark.parametrize(
    "spec,make,algorithm,signing",
    [
        ("RSA_2048", lambda: rsa.generate_private_key(65537, 2048), "RSA_AES_KEY_WRAP_SHA_256", "RSASSA_PSS_SHA_256"),
        ("ECC_NIST_P256", lambda: ec.generate_private_key(ec.SECP256R1()), "RSAES_OAEP_SHA_256", "ECDSA_SHA_256"),
        ("ECC_NIST_P384", lambda: ec.generate_private_key(ec.SECP384R1()), "RSA_AES_KEY_WRAP_SHA_256", "ECDSA_SHA_384"),
        ("ECC_SECG_P256K1", lambda: ec.generate_private_key(ec.SECP256K1()), "RSAES_OAEP_SHA_256", "ECDSA_SHA_256"),
        ("ECC_NIST_EDWARDS25519", ed25519.Ed25519PrivateKey.generate, "RSAES_OAEP_SHA_256", "ED25519_SHA_512"),
    ],
)
def test_imported_private_key_signs_and_has_its_public_key(kms, spec, make, algorithm, signing):
    key_id = external_spec_key(kms, spec, "SIGN_VERIFY")
    private = make()
    import_material(kms, key_id, pkcs8(private), algorithm)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.get_public_key(KeyId=key_id)["PublicKey"] == spki(private.public_key())
    message = b"signed with imported material"
    sig = kms.sign(KeyId=key_id, Message=message, SigningAlgorithm=signing)["Signature"]
    pub = private.public_key()
    if signing.startswith("RSASSA_PSS"):
        pub.verify(sig, message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    elif signing.startswith("ECDSA"):
        pub.verify(sig, message, ec.ECDSA({"ECDSA_SHA_256": hashes.SHA256(), "ECDSA_SHA_384": hashes.SHA384()}[signing]))
    else:
        pub.verify(sig, message)
    # Deleting and re-importing takes only the same key.
    kms.delete_imported_key_material(KeyId=key_id)
    expect_error("KMSInvalidStateException", kms.sign, KeyId=key_id, Message=message, SigningAlgorithm=signing)
    expect_error("IncorrectKeyMaterialException", import_material, kms, key_id, pkcs8(make()), algorithm)
    import_material(kms, key_id, pkcs8(private), algorithm)
    assert kms.verify(KeyId=key_id, Message=message, Signature=sig, SigningAlgorithm=signing)["SignatureValid"]


def test_imported_rsa_decrypts_local_oaep(kms):
    key_id = external_spec_key(kms, "RSA_3072", "ENCRYPT_DECRYPT")
    private = rsa.generate_private_key(65537, 3072)
    import_material(kms, key_id, pkcs8(private), "RSA_AES_KEY_WRAP_SHA_256")
    ct = private.public_key().encrypt(b"to the imported key", OAEP_256)
    assert kms.decrypt(KeyId=key_id, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == b"to the imported key"


@pytest.mark.parametrize("spec,algorithm,length,hash_cls", [("HMAC_256", "HMAC_SHA_256", 32, hashes.SHA256), ("HMAC_512", "HMAC_SHA_512", 64, hashes.SHA512)])
def test_imported_hmac_key_macs_like_local_hmac(kms, spec, algorithm, length, hash_cls):
    key_id = external_spec_key(kms, spec, "GENERATE_VERIFY_MAC")
    material = os.urandom(length)
    import_material(kms, key_id, material)
    message = b"mac me"
    local = crypto_hmac.HMAC(material, hash_cls())
    local.update(message)
    expected = local.finalize()
    assert kms.generate_mac(KeyId=key_id, Message=message, MacAlgorithm=algorithm)["Mac"] == expected
    assert kms.verify_mac(KeyId=key_id, Message=message, Mac=expected, MacAlgorithm=algorithm)["MacValid"]


def test_imported_material_of_the_wrong_kind_is_refused(kms):
    # A P-384 key into a P-256 key, an RSA-2048 key into RSA_3072, garbage,
    # an HMAC key too short: IncorrectKeyMaterialException, nothing stored.
    cases = [
        ("ECC_NIST_P256", "SIGN_VERIFY", pkcs8(ec.generate_private_key(ec.SECP384R1())), "RSA_AES_KEY_WRAP_SHA_256"),
        ("RSA_3072", "SIGN_VERIFY", pkcs8(rsa.generate_private_key(65537, 2048)), "RSA_AES_KEY_WRAP_SHA_256"),
        ("ECC_NIST_P256", "SIGN_VERIFY", os.urandom(120), "RSAES_OAEP_SHA_256"),
        ("HMAC_256", "GENERATE_VERIFY_MAC", os.urandom(16), "RSAES_OAEP_SHA_256"),
    ]
    for spec, usage, material, algorithm in cases:
        key_id = external_spec_key(kms, spec, usage)
        expect_error("IncorrectKeyMaterialException", import_material, kms, key_id, material, algorithm)
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
        expect_error("KMSInvalidStateException", kms.get_public_key, KeyId=key_id) if spec != "HMAC_256" else None
    # ML-DSA and ML-KEM material cannot be imported.
    expect_error("UnsupportedOperationException", kms.create_key, Origin="EXTERNAL", KeySpec="ML_DSA_65", KeyUsage="SIGN_VERIFY")
    expect_error("UnsupportedOperationException", kms.create_key, Origin="EXTERNAL", KeySpec="ML_KEM_768", KeyUsage="ENCAPSULATE_DECAPSULATE")
