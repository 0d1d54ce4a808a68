"""Keys of every spec through boto3, checked outside the server: signatures
verified with `cryptography` (and the `openssl` command line for SM2) on
GetPublicKey's DER, MACs against Python's `hmac`, RSA-OAEP ciphertexts made
locally decrypted by the server, ECDH and ML-KEM secrets compared with a local
computation, data key pairs matched against their public keys. Bad input gets
AWS's error types and leaves the key as it was (docs/key-specs.md)."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kw_helpers import expect_error

HASHES = {"SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512}
HASHLIB = {"SHA_256": hashlib.sha256, "SHA_384": hashlib.sha384, "SHA_512": hashlib.sha512}

# (spec, usage) -> the DescribeKey algorithm lists AWS documents
# (https://docs.aws.amazon.com/kms/latest/developerguide/symm-asymm-choose-key-spec.html).
RSA_SIGNING = [
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
]
DESCRIBED = {
    ("RSA_2048", "SIGN_VERIFY"): {"SigningAlgorithms": RSA_SIGNING},
    ("RSA_3072", "ENCRYPT_DECRYPT"): {"EncryptionAlgorithms": ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]},
    ("ECC_NIST_P256", "SIGN_VERIFY"): {"SigningAlgorithms": ["ECDSA_SHA_256"]},
    ("ECC_NIST_P384", "SIGN_VERIFY"): {"SigningAlgorithms": ["ECDSA_SHA_384"]},
    ("ECC_NIST_P521", "SIGN_VERIFY"): {"SigningAlgorithms": ["ECDSA_SHA_512"]},
    ("ECC_NIST_P256", "KEY_AGREEMENT"): {"KeyAgreementAlgorithms": ["ECDH"]},
    ("ECC_SECG_P256K1", "SIGN_VERIFY"): {"SigningAlgorithms": ["ECDSA_SHA_256"]},
    ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY"): {"SigningAlgorithms": ["ED25519_SHA_512", "ED25519_PH_SHA_512"]},
    ("HMAC_256", "GENERATE_VERIFY_MAC"): {"MacAlgorithms": ["HMAC_SHA_256"]},
    ("ML_DSA_65", "SIGN_VERIFY"): {"SigningAlgorithms": ["ML_DSA_SHAKE_256"]},
    ("ML_KEM_768", "ENCAPSULATE_DECAPSULATE"): {},
}
ALGORITHM_FIELDS = ["EncryptionAlgorithms", "SigningAlgorithms", "MacAlgorithms", "KeyAgreementAlgorithms"]


def create(kms, spec: str, usage: str | None = None) -> str:
    kwargs = {"KeySpec": spec}
    if usage:
        kwargs["KeyUsage"] = usage
    return kms.create_key(**kwargs)["KeyMetadata"]["KeyId"]


def public_key(kms, key_id: str):
    return serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])


@pytest.mark.parametrize("spec,usage", sorted(DESCRIBED))
def test_describe_key_shows_spec_usage_and_algorithms(kms, spec, usage):
    created = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    described = kms.describe_key(KeyId=created["KeyId"])["KeyMetadata"]
    for meta in (created, described):
        assert meta["KeySpec"] == spec
        assert meta["KeyUsage"] == usage
        for field in ALGORITHM_FIELDS:
            assert meta.get(field) == DESCRIBED[(spec, usage)].get(field), (field, meta)
    got = kms.get_public_key(KeyId=created["KeyId"]) if usage != "GENERATE_VERIFY_MAC" else None
    if got is not None:
        assert got["KeySpec"] == spec and got["KeyUsage"] == usage
        assert serialization.load_der_public_key(got["PublicKey"]) is not None
        if spec.startswith("ML_KEM"):
            assert got["EncapsulationAlgorithms"] == ["ML_KEM"]


def verify_locally(pub, algorithm: str, message: bytes, signature: bytes) -> None:
    """Raises InvalidSignature unless `signature` is valid (RAW message)."""
    if algorithm.startswith("RSASSA_PSS_"):
        h = HASHES[algorithm[len("RSASSA_PSS_"):]]
        pub.verify(signature, message, padding.PSS(mgf=padding.MGF1(h()), salt_length=h.digest_size), h())
    elif algorithm.startswith("RSASSA_PKCS1_V1_5_"):
        h = HASHES[algorithm[len("RSASSA_PKCS1_V1_5_"):]]
        pub.verify(signature, message, padding.PKCS1v15(), h())
    elif algorithm.startswith("ECDSA_"):
        pub.verify(signature, message, ec.ECDSA(HASHES[algorithm[len("ECDSA_"):]]()))
    elif algorithm == "ED25519_SHA_512":
        pub.verify(signature, message)
    elif algorithm == "ML_DSA_SHAKE_256":
        pub.verify(signature, message)
    else:
        raise AssertionError(algorithm)


SIGNING_CASES = [
    ("RSA_2048", a) for a in RSA_SIGNING
] + [
    ("ECC_NIST_P256", "ECDSA_SHA_256"),
    ("ECC_NIST_P384", "ECDSA_SHA_384"),
    ("ECC_NIST_P521", "ECDSA_SHA_512"),
    ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
    ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
    ("ML_DSA_44", "ML_DSA_SHAKE_256"),
    ("ML_DSA_65", "ML_DSA_SHAKE_256"),
    ("ML_DSA_87", "ML_DSA_SHAKE_256"),
]


@pytest.mark.parametrize("spec,algorithm", SIGNING_CASES)
def test_sign_raw_verifies_locally_and_through_verify(kms, spec, algorithm):
    key = create(kms, spec, "SIGN_VERIFY")
    pub = public_key(kms, key)
    message = os.urandom(300)
    resp = kms.sign(KeyId=key, Message=message, MessageType="RAW", SigningAlgorithm=algorithm)
    assert resp["SigningAlgorithm"] == algorithm
    signature = resp["Signature"]
    verify_locally(pub, algorithm, message, signature)
    with pytest.raises(InvalidSignature):
        verify_locally(pub, algorithm, message + b"x", signature)
    ok = kms.verify(KeyId=key, Message=message, MessageType="RAW", Signature=signature, SigningAlgorithm=algorithm)
    assert ok["SignatureValid"] is True
    assert ok["SigningAlgorithm"] == algorithm
    bad = bytearray(signature)
    bad[len(bad) // 2] ^= 0x01
    expect_error(
        "KMSInvalidSignatureException",
        kms.verify,
        KeyId=key,
        Message=message,
        Signature=bytes(bad),
        SigningAlgorithm=algorithm,
    )


@pytest.mark.parametrize(
    "spec,algorithm",
    [(s, a) for s, a in SIGNING_CASES if a.startswith(("RSASSA", "ECDSA"))],
)
def test_sign_digest_equals_raw_after_hashing(kms, spec, algorithm):
    key = create(kms, spec, "SIGN_VERIFY")
    pub = public_key(kms, key)
    name = algorithm.rsplit("_", 2)
    hash_name = f"{name[-2]}_{name[-1]}"
    message = b"digest me" * 40
    digest = HASHLIB[hash_name](message).digest()
    signature = kms.sign(KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm)["Signature"]
    # The signature over the digest is a signature over the message.
    verify_locally(pub, algorithm, message, signature)
    assert kms.verify(KeyId=key, Message=message, MessageType="RAW", Signature=signature, SigningAlgorithm=algorithm)["SignatureValid"]
    # A digest of the wrong length is refused before any signing.
    expect_error(
        "ValidationException",
        kms.sign,
        KeyId=key,
        Message=digest[:-1],
        MessageType="DIGEST",
        SigningAlgorithm=algorithm,
    )


def test_ed25519ph_raw_and_digest_verify_with_the_public_key(kms):
    key = create(kms, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY")
    message = b"pre-hashed edwards"
    raw = kms.sign(KeyId=key, Message=message, SigningAlgorithm="ED25519_PH_SHA_512")["Signature"]
    digest = hashlib.sha512(message).digest()
    pre = kms.sign(KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm="ED25519_PH_SHA_512")["Signature"]
    # Ed25519ph is deterministic: both forms give the same signature.
    assert raw == pre
    for sig, mtype, msg in [(raw, "DIGEST", digest), (pre, "RAW", message)]:
        assert kms.verify(KeyId=key, Message=msg, MessageType=mtype, Signature=sig, SigningAlgorithm="ED25519_PH_SHA_512")["SignatureValid"]
    # Pure Ed25519 takes no DIGEST.
    expect_error("ValidationException", kms.sign, KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm="ED25519_SHA_512")
    # The pure signature is not an Ed25519ph signature.
    pure = kms.sign(KeyId=key, Message=message, SigningAlgorithm="ED25519_SHA_512")["Signature"]
    public_key(kms, key).verify(pure, message)
    expect_error("KMSInvalidSignatureException", kms.verify, KeyId=key, Message=message, Signature=pure, SigningAlgorithm="ED25519_PH_SHA_512")


def test_ml_dsa_external_mu_verifies_locally(kms):
    key = create(kms, "ML_DSA_65", "SIGN_VERIFY")
    pub = public_key(kms, key)
    message = b"post-quantum message"
    hasher = mldsa.MLDSAMuHasher(pub) if hasattr(mldsa, "MLDSAMuHasher") else None
    if hasher is None:
        pytest.fail("cryptography lacks MLDSAMuHasher")
    hasher.update(message)
    mu = hasher.finalize()
    assert len(mu) == 64
    try:
        resp = kms.sign(KeyId=key, Message=mu, MessageType="EXTERNAL_MU", SigningAlgorithm="ML_DSA_SHAKE_256")
    except kms.exceptions.UnsupportedOperationException as e:  # documented gap
        pytest.fail(f"EXTERNAL_MU unsupported: {e}")
    pub.verify(resp["Signature"], message)
    assert kms.verify(KeyId=key, Message=mu, MessageType="EXTERNAL_MU", Signature=resp["Signature"], SigningAlgorithm="ML_DSA_SHAKE_256")["SignatureValid"]
    expect_error("ValidationException", kms.sign, KeyId=key, Message=mu[:63], MessageType="EXTERNAL_MU", SigningAlgorithm="ML_DSA_SHAKE_256")
    expect_error("ValidationException", kms.sign, KeyId=key, Message=hashlib.sha256(message).digest(), MessageType="DIGEST", SigningAlgorithm="ML_DSA_SHAKE_256")


def openssl_verify_sm2(tmp_path, public_der: bytes, message: bytes, signature: bytes) -> subprocess.CompletedProcess:
    (tmp_path / "pub.der").write_bytes(public_der)
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(signature)
    return subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", "pub.der",
         "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
         "-in", "msg", "-sigfile", "sig"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )


def test_sm2_signature_verifies_with_openssl(kms, tmp_path):
    key = create(kms, "SM2", "SIGN_VERIFY")
    message = b"SM2 message for offline verification"
    signature = kms.sign(KeyId=key, Message=message, SigningAlgorithm="SM2DSA")["Signature"]
    der = kms.get_public_key(KeyId=key)["PublicKey"]
    proc = openssl_verify_sm2(tmp_path, der, message, signature)
    assert proc.returncode == 0 and "Success" in proc.stdout, proc.stderr + proc.stdout
    proc = openssl_verify_sm2(tmp_path, der, message + b"!", signature)
    assert proc.returncode != 0, proc.stdout
    assert kms.verify(KeyId=key, Message=message, Signature=signature, SigningAlgorithm="SM2DSA")["SignatureValid"]


@pytest.mark.parametrize("spec,algorithm", [("HMAC_224", "HMAC_SHA_224"), ("HMAC_256", "HMAC_SHA_256"), ("HMAC_384", "HMAC_SHA_384"), ("HMAC_512", "HMAC_SHA_512")])
def test_mac_round_trip_and_tamper(kms, spec, algorithm):
    key = create(kms, spec, "GENERATE_VERIFY_MAC")
    message = os.urandom(100)
    resp = kms.generate_mac(KeyId=key, Message=message, MacAlgorithm=algorithm)
    assert resp["MacAlgorithm"] == algorithm
    mac = resp["Mac"]
    assert len(mac) == {"224": 28, "256": 32, "384": 48, "512": 64}[spec[-3:]]
    # Deterministic, and specific to the message.
    assert kms.generate_mac(KeyId=key, Message=message, MacAlgorithm=algorithm)["Mac"] == mac
    assert kms.generate_mac(KeyId=key, Message=message + b"!", MacAlgorithm=algorithm)["Mac"] != mac
    assert kms.verify_mac(KeyId=key, Message=message, Mac=mac, MacAlgorithm=algorithm)["MacValid"] is True
    bad = bytes([mac[0] ^ 1]) + mac[1:]
    expect_error("KMSInvalidMacException", kms.verify_mac, KeyId=key, Message=message, Mac=bad, MacAlgorithm=algorithm)
    expect_error("KMSInvalidMacException", kms.verify_mac, KeyId=key, Message=message, Mac=mac[:-1], MacAlgorithm=algorithm)
    other = "HMAC_SHA_512" if algorithm != "HMAC_SHA_512" else "HMAC_SHA_256"
    expect_error("InvalidKeyUsageException", kms.generate_mac, KeyId=key, Message=message, MacAlgorithm=other)
    # Two keys of the same spec give different MACs (the material is the key's own).
    key2 = create(kms, spec, "GENERATE_VERIFY_MAC")
    assert kms.generate_mac(KeyId=key2, Message=message, MacAlgorithm=algorithm)["Mac"] != mac
    expect_error("KMSInvalidMacException", kms.verify_mac, KeyId=key2, Message=message, Mac=mac, MacAlgorithm=algorithm)


@pytest.mark.parametrize("spec,max_sha1,max_sha256", [("RSA_2048", 214, 190), ("RSA_3072", 342, 318), ("RSA_4096", 470, 446)])
def test_rsa_oaep_local_ciphertexts_decrypt_and_limits(kms, spec, max_sha1, max_sha256):
    key = create(kms, spec, "ENCRYPT_DECRYPT")
    pub = public_key(kms, key)
    for algorithm, h, limit in [("RSAES_OAEP_SHA_1", hashes.SHA1, max_sha1), ("RSAES_OAEP_SHA_256", hashes.SHA256, max_sha256)]:
        plaintext = os.urandom(limit)
        local = pub.encrypt(plaintext, padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None))
        got = kms.decrypt(KeyId=key, CiphertextBlob=local, EncryptionAlgorithm=algorithm)
        assert got["Plaintext"] == plaintext
        assert got["EncryptionAlgorithm"] == algorithm
        server = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionAlgorithm=algorithm)
        assert server["EncryptionAlgorithm"] == algorithm
        assert kms.decrypt(KeyId=key, CiphertextBlob=server["CiphertextBlob"], EncryptionAlgorithm=algorithm)["Plaintext"] == plaintext
        expect_error("ValidationException", kms.encrypt, KeyId=key, Plaintext=os.urandom(limit + 1), EncryptionAlgorithm=algorithm)
    # The wrong algorithm does not decrypt; nor does a tampered ciphertext.
    expect_error("InvalidCiphertextException", kms.decrypt, KeyId=key, CiphertextBlob=local, EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    # Without EncryptionAlgorithm the request means SYMMETRIC_DEFAULT, which an RSA key lacks.
    expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=key, Plaintext=b"x")
    # Asymmetric Decrypt must name the key.
    expect_error("ValidationException", kms.decrypt, CiphertextBlob=local, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=key, Plaintext=b"x", EncryptionAlgorithm="SM2PKE")


def test_sm2_encryption_round_trip_and_openssl_ciphertexts(kms, tmp_path):
    key = create(kms, "SM2", "ENCRYPT_DECRYPT")
    plaintext = os.urandom(1024)
    ct = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionAlgorithm="SM2PKE")["CiphertextBlob"]
    assert kms.decrypt(KeyId=key, CiphertextBlob=ct, EncryptionAlgorithm="SM2PKE")["Plaintext"] == plaintext
    expect_error("ValidationException", kms.encrypt, KeyId=key, Plaintext=os.urandom(1025), EncryptionAlgorithm="SM2PKE")
    # A ciphertext made by the openssl command line with GetPublicKey's DER
    # (GM/T 0009 DER, C1C3C2) decrypts through the server.
    (tmp_path / "pub.der").write_bytes(kms.get_public_key(KeyId=key)["PublicKey"])
    (tmp_path / "pt").write_bytes(b"encrypted by openssl")
    proc = subprocess.run(
        ["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", "pub.der",
         "-in", "pt", "-out", "ct"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    got = kms.decrypt(KeyId=key, CiphertextBlob=(tmp_path / "ct").read_bytes(), EncryptionAlgorithm="SM2PKE")
    assert got["Plaintext"] == b"encrypted by openssl"
    bad = bytearray((tmp_path / "ct").read_bytes())
    bad[-1] ^= 1
    expect_error("InvalidCiphertextException", kms.decrypt, KeyId=key, CiphertextBlob=bytes(bad), EncryptionAlgorithm="SM2PKE")


@pytest.mark.parametrize("spec,curve", [("ECC_NIST_P256", ec.SECP256R1), ("ECC_NIST_P384", ec.SECP384R1), ("ECC_NIST_P521", ec.SECP521R1)])
def test_derive_shared_secret_equals_local_ecdh(kms, spec, curve):
    key = create(kms, spec, "KEY_AGREEMENT")
    server_pub = public_key(kms, key)
    mine = ec.generate_private_key(curve())
    mine_der = mine.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    resp = kms.derive_shared_secret(KeyId=key, KeyAgreementAlgorithm="ECDH", PublicKey=mine_der)
    assert resp["SharedSecret"] == mine.exchange(ec.ECDH(), server_pub)
    assert resp["KeyAgreementAlgorithm"] == "ECDH"
    assert resp["KeyOrigin"] == "AWS_KMS"
    # Malformed or wrong-curve peer keys are ValidationException.
    other_curve = ec.SECP384R1() if curve is not ec.SECP384R1 else ec.SECP256R1()
    wrong = ec.generate_private_key(other_curve).public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for peer in [b"not a key", wrong, mine_der[:-5]]:
        expect_error("ValidationException", kms.derive_shared_secret, KeyId=key, KeyAgreementAlgorithm="ECDH", PublicKey=peer)
    expect_error("InvalidKeyUsageException", kms.sign, KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")


@pytest.mark.parametrize("spec,cls,ct_len", [("ML_KEM_768", mlkem.MLKEM768PublicKey, 1088), ("ML_KEM_1024", mlkem.MLKEM1024PublicKey, 1568)])
def test_ml_kem_local_encapsulation_decapsulates_on_the_server(kms, spec, cls, ct_len):
    key = create(kms, spec, "ENCAPSULATE_DECAPSULATE")
    pub = public_key(kms, key)
    assert isinstance(pub, cls)
    secret, ciphertext = pub.encapsulate()
    assert len(ciphertext) == ct_len
    got = kms.decapsulate(KeyId=key, SharedSecretCiphertextBlob=ciphertext, EncapsulationAlgorithm="ML_KEM")
    assert got["SharedSecret"] == secret
    enc = kms.encapsulate(KeyId=key, EncapsulationAlgorithm="ML_KEM")
    assert kms.decapsulate(KeyId=key, SharedSecretCiphertextBlob=enc["SharedSecretCiphertextBlob"], EncapsulationAlgorithm="ML_KEM")["SharedSecret"] == enc["SharedSecret"]
    expect_error("InvalidCiphertextException", kms.decapsulate, KeyId=key, SharedSecretCiphertextBlob=ciphertext[:-1], EncapsulationAlgorithm="ML_KEM")


def test_ml_kem_512_round_trip(kms):
    key = create(kms, "ML_KEM_512", "ENCAPSULATE_DECAPSULATE")
    enc = kms.encapsulate(KeyId=key, EncapsulationAlgorithm="ML_KEM")
    assert len(enc["SharedSecretCiphertextBlob"]) == 768
    assert kms.decapsulate(KeyId=key, SharedSecretCiphertextBlob=enc["SharedSecretCiphertextBlob"], EncapsulationAlgorithm="ML_KEM")["SharedSecret"] == enc["SharedSecret"]


PAIR_SPECS = ["RSA_2048", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519", "SM2", "ML_KEM_768"]


@pytest.mark.parametrize("spec", PAIR_SPECS)
def test_data_key_pair_private_key_matches_public_key(kms, spec):
    cmk = create(kms, "SYMMETRIC_DEFAULT")
    ctx = {"purpose": "pair"}
    pair = kms.generate_data_key_pair(KeyId=cmk, KeyPairSpec=spec, EncryptionContext=ctx)
    assert pair["KeyPairSpec"] == spec
    private_der = pair["PrivateKeyPlaintext"]
    # The private ciphertext is a symmetric ciphertext of the PKCS#8 bytes.
    back = kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=ctx)
    assert back["Plaintext"] == private_der
    if spec == "SM2":
        proc = subprocess.run(["openssl", "pkey", "-inform", "DER", "-pubout", "-outform", "DER"], input=private_der, capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == pair["PublicKey"]
        return
    private = serialization.load_der_private_key(private_der, password=None)
    derived = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert derived == pair["PublicKey"]
    without = kms.generate_data_key_pair_without_plaintext(KeyId=cmk, KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in without
    assert without["PublicKey"] != pair["PublicKey"]
    # The pair spec's key is not the CMK's: an asymmetric CMK cannot wrap it.
    rsa_key = create(kms, "RSA_2048", "SIGN_VERIFY")
    expect_error("InvalidKeyUsageException", kms.generate_data_key_pair, KeyId=rsa_key, KeyPairSpec=spec)


def described(kms, key):
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    return {k: meta[k] for k in ("KeyState", "KeySpec", "KeyUsage", "Enabled")}


def test_bad_input_gets_aws_errors_and_changes_nothing(kms):
    sign_key = create(kms, "ECC_NIST_P256", "SIGN_VERIFY")
    mac_key = create(kms, "HMAC_256", "GENERATE_VERIFY_MAC")
    rsa_enc = create(kms, "RSA_2048", "ENCRYPT_DECRYPT")
    sym = create(kms, "SYMMETRIC_DEFAULT")
    before = {k: described(kms, k) for k in (sign_key, mac_key, rsa_enc, sym)}
    # Spec and usage that do not go together, and specs that need a usage.
    for spec, usage in [("ECC_SECG_P256K1", "KEY_AGREEMENT"), ("HMAC_256", "ENCRYPT_DECRYPT"), ("RSA_2048", "KEY_AGREEMENT"), ("ML_KEM_768", "SIGN_VERIFY"), ("SYMMETRIC_DEFAULT", "SIGN_VERIFY")]:
        expect_error("ValidationException", kms.create_key, KeySpec=spec, KeyUsage=usage)
    for spec in ["HMAC_256", "ECC_NIST_P256", "ML_DSA_44", "ML_KEM_512", "ECC_NIST_EDWARDS25519"]:
        expect_error("ValidationException", kms.create_key, KeySpec=spec)
    expect_error("ValidationException", kms.create_key, KeySpec="RSA_1024", KeyUsage="SIGN_VERIFY")
    # Wrong usage for the key, or an algorithm its spec lacks.
    expect_error("InvalidKeyUsageException", kms.sign, KeyId=mac_key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    expect_error("InvalidKeyUsageException", kms.sign, KeyId=sign_key, Message=b"m", SigningAlgorithm="ECDSA_SHA_384")
    expect_error("InvalidKeyUsageException", kms.sign, KeyId=sym, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    expect_error("InvalidKeyUsageException", kms.generate_mac, KeyId=sign_key, Message=b"m", MacAlgorithm="HMAC_SHA_256")
    expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=mac_key, Plaintext=b"m")
    expect_error("InvalidKeyUsageException", kms.generate_data_key, KeyId=rsa_enc, KeySpec="AES_256")
    expect_error("InvalidKeyUsageException", kms.encrypt, KeyId=sym, Plaintext=b"m", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    expect_error("InvalidKeyUsageException", kms.derive_shared_secret, KeyId=sign_key, KeyAgreementAlgorithm="ECDH", PublicKey=b"x")
    expect_error("InvalidKeyUsageException", kms.encapsulate, KeyId=rsa_enc, EncapsulationAlgorithm="ML_KEM")
    # Oversized and empty messages, garbage signatures.
    expect_error("ValidationException", kms.sign, KeyId=sign_key, Message=b"m" * 4097, SigningAlgorithm="ECDSA_SHA_256")
    expect_error("ValidationException", kms.generate_mac, KeyId=mac_key, Message=b"m" * 4097, MacAlgorithm="HMAC_SHA_256")
    expect_error("ValidationException", kms.sign, KeyId=sign_key, Message=b"m", SigningAlgorithm="ECDSA_SHA_1")
    expect_error("ValidationException", kms.sign, KeyId=sign_key, Message=b"m", MessageType="PREHASHED", SigningAlgorithm="ECDSA_SHA_256")
    expect_error("ValidationException", kms.sign, KeyId=sign_key, Message=b"m" * 64, MessageType="EXTERNAL_MU", SigningAlgorithm="ECDSA_SHA_256")
    for garbage in [b"\x00", os.urandom(72), b"\x30" * 200]:
        expect_error("KMSInvalidSignatureException", kms.verify, KeyId=sign_key, Message=b"m", Signature=garbage, SigningAlgorithm="ECDSA_SHA_256")
    # GetPublicKey of a key without one.
    expect_error("UnsupportedOperationException", kms.get_public_key, KeyId=mac_key)
    expect_error("UnsupportedOperationException", kms.get_public_key, KeyId=sym)
    # Rotation is for symmetric encryption keys only.
    expect_error("UnsupportedOperationException", kms.enable_key_rotation, KeyId=sign_key)
    expect_error("UnsupportedOperationException", kms.rotate_key_on_demand, KeyId=mac_key)
    assert kms.get_key_rotation_status(KeyId=sign_key)["KeyRotationEnabled"] is False
    # DryRun answers DryRunOperationException and signs nothing.
    expect_error("DryRunOperationException", kms.sign, KeyId=sign_key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256", DryRun=True)
    assert {k: described(kms, k) for k in before} == before


def test_grants_states_aliases_and_deletion_work_for_other_specs(kms, new_client, account, server):
    key = create(kms, "ECC_NIST_P384", "SIGN_VERIFY")
    mac_key = create(kms, "HMAC_384", "GENERATE_VERIFY_MAC")
    kms.create_alias(AliasName="alias/p384-signer", TargetKeyId=key)
    sig = kms.sign(KeyId="alias/p384-signer", Message=b"by alias", SigningAlgorithm="ECDSA_SHA_384")["Signature"]
    assert kms.verify(KeyId="alias/p384-signer", Message=b"by alias", Signature=sig, SigningAlgorithm="ECDSA_SHA_384")["SignatureValid"]
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": "team", "TagValue": "pki"}])
    assert kms.list_resource_tags(KeyId=key)["Tags"] == [{"TagKey": "team", "TagValue": "pki"}]
    # Grant operations must fit the key type (AWS's table).
    grantee = f"arn:aws:iam::{account.account_id}:root"
    kms.create_grant(KeyId=key, GranteePrincipal=grantee, Operations=["Sign", "Verify", "GetPublicKey", "DescribeKey"])
    kms.create_grant(KeyId=mac_key, GranteePrincipal=grantee, Operations=["GenerateMac", "VerifyMac"])
    expect_error("ValidationException", kms.create_grant, KeyId=key, GranteePrincipal=grantee, Operations=["Encrypt"])
    expect_error("ValidationException", kms.create_grant, KeyId=mac_key, GranteePrincipal=grantee, Operations=["Sign"])
    sym = create(kms, "SYMMETRIC_DEFAULT")
    expect_error("ValidationException", kms.create_grant, KeyId=sym, GranteePrincipal=grantee, Operations=["GenerateMac"])
    # Key states.
    kms.disable_key(KeyId=key)
    expect_error("DisabledException", kms.sign, KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_384")
    expect_error("DisabledException", kms.get_public_key, KeyId=key)
    kms.enable_key(KeyId=key)
    kms.schedule_key_deletion(KeyId=mac_key, PendingWindowInDays=7)
    expect_error("KMSInvalidStateException", kms.generate_mac, KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_384")
    kms.cancel_key_deletion(KeyId=mac_key)
    kms.enable_key(KeyId=mac_key)
    assert kms.generate_mac(KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_384")["Mac"]


def test_public_key_is_stable_and_keys_list_with_their_specs(kms):
    key = create(kms, "RSA_3072", "SIGN_VERIFY")
    first = kms.get_public_key(KeyId=key)["PublicKey"]
    assert kms.get_public_key(KeyId=key)["PublicKey"] == first
    assert public_key(kms, key).key_size == 3072
    kms.update_key_description(KeyId=key, Description="still the same key")
    assert kms.get_public_key(KeyId=key)["PublicKey"] == first


def test_rsa_4096_generation_burst_does_not_starve_other_requests(kms, new_client):
    """20 RSA_4096 CreateKey calls at once (seconds of key generation, run
    on a bounded blocking pool) while another client keeps calling
    DescribeKey: every key is made and DescribeKey keeps being answered
    throughout. The bounds are generous completion bounds, not timings."""
    import threading
    import time

    probe_key = create(kms, "SYMMETRIC_DEFAULT")
    clients = [new_client() for _ in range(20)]
    made: list[tuple] = []
    errors: list[BaseException] = []

    def make(client):
        try:
            meta = client.create_key(KeySpec="RSA_4096", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
            made.append((client, meta["KeyId"]))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=make, args=(c,)) for c in clients]
    started = time.monotonic()
    for t in threads:
        t.start()
    answered, slowest = 0, 0.0
    prober = kms
    while any(t.is_alive() for t in threads):
        t0 = time.monotonic()
        assert prober.describe_key(KeyId=probe_key)["KeyMetadata"]["KeyState"] == "Enabled"
        slowest = max(slowest, time.monotonic() - t0)
        answered += 1
        assert time.monotonic() - started < 600, "RSA_4096 burst did not finish"
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({key for _, key in made}) == 20
    burst = time.monotonic() - started
    # Other requests were answered while the keys were generated: at least
    # one DescribeKey per two seconds of burst, none waiting for the burst.
    assert answered >= max(3, int(burst / 2)), (answered, burst)
    assert slowest < burst / 2 or slowest < 1.0, (slowest, burst)
    client, key = made[0]
    spki = client.get_public_key(KeyId=key)["PublicKey"]
    assert serialization.load_der_public_key(spki).key_size == 4096


def test_re_encrypt_between_symmetric_and_asymmetric_keys(kms):
    sym = create(kms, "SYMMETRIC_DEFAULT")
    rsa_key = create(kms, "RSA_2048", "ENCRYPT_DECRYPT")
    sm2_key = create(kms, "SM2", "ENCRYPT_DECRYPT")
    plaintext = b"moved between key types"
    ctx = {"purpose": "re-encrypt"}
    blob = kms.encrypt(KeyId=sym, Plaintext=plaintext, EncryptionContext=ctx)["CiphertextBlob"]
    # Symmetric -> RSA.
    out = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=ctx, DestinationKeyId=rsa_key,
                         DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert out["SourceEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert out["DestinationEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    rsa_ct = out["CiphertextBlob"]
    assert kms.decrypt(KeyId=rsa_key, CiphertextBlob=rsa_ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == plaintext
    # RSA (a ciphertext made locally) -> SM2 -> symmetric.
    local = public_key(kms, rsa_key).encrypt(plaintext, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    to_sm2 = kms.re_encrypt(CiphertextBlob=local, SourceKeyId=rsa_key, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_1",
                            DestinationKeyId=sm2_key, DestinationEncryptionAlgorithm="SM2PKE")
    back = kms.re_encrypt(CiphertextBlob=to_sm2["CiphertextBlob"], SourceKeyId=sm2_key, SourceEncryptionAlgorithm="SM2PKE",
                          DestinationKeyId=sym, DestinationEncryptionContext=ctx)
    assert back["SourceEncryptionAlgorithm"] == "SM2PKE"
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == plaintext
    # Bad input: an asymmetric source must name its key; the plaintext must fit the destination.
    expect_error("ValidationException", kms.re_encrypt, CiphertextBlob=local, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_1", DestinationKeyId=sym)
    big = kms.encrypt(KeyId=sym, Plaintext=os.urandom(300))["CiphertextBlob"]
    expect_error("ValidationException", kms.re_encrypt, CiphertextBlob=big, DestinationKeyId=rsa_key, DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
    expect_error("InvalidKeyUsageException", kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext=ctx, DestinationKeyId=sym, DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
    expect_error("InvalidCiphertextException", kms.re_encrypt, CiphertextBlob=local[:-1] + bytes([local[-1] ^ 1]), SourceKeyId=rsa_key, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_1", DestinationKeyId=sym)
    expect_error("DryRunOperationException", kms.re_encrypt, CiphertextBlob=local, SourceKeyId=rsa_key, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_1", DestinationKeyId=sym, DryRun=True)
