#!/usr/bin/env python3
"""Known-answer vectors for imported key material (BYOK), written from the
AWS KMS specification of ImportKeyMaterial's wrapping algorithms with an
implementation independent of aws-lc-rs: Python's `cryptography` package
(RSA-OAEP from its OpenSSL backend, RFC 5649 AES key wrap with padding).

    RSAES_OAEP_SHA_1 / _256:
        EncryptedKeyMaterial = RSA-OAEP(pub, material), hash and MGF1 hash
        SHA-1 / SHA-256, empty label
    RSA_AES_KEY_WRAP_SHA_1 / _256:
        K = random AES-256 key
        EncryptedKeyMaterial = RSA-OAEP(pub, K) || AES-KWP(K, material)

The wrapping key pairs of production tokens are fresh per call, so the
script makes its own RSA key pairs and records their private keys (PKCS#8
DER); the Rust test seals each into an import token
(`Importer::parameters_for_private_key`) and unwraps every case through the
production code path. Ciphertexts are randomised, so each run writes a
different (equally valid) file.

    python3 -m venv /tmp/pyc && /tmp/pyc/bin/pip install cryptography
    /tmp/pyc/bin/python make_import_vectors.py            # writes import-v1.json
"""

import json
import os
import sys

import cryptography
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap, aes_key_wrap_with_padding

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "import-v1.json")

HASHES = {"SHA_1": hashes.SHA1, "SHA_256": hashes.SHA256}
ALGORITHMS = [
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
]


def self_check():
    """RFC 5649 section 6 vectors, so the key wrap itself is known good."""
    kek = bytes.fromhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
    assert aes_key_wrap_with_padding(
        kek, bytes.fromhex("c37b7e6492584340bed12207808941155068f738")
    ) == bytes.fromhex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
    assert aes_key_wrap_with_padding(kek, bytes.fromhex("466f7250617369")) == bytes.fromhex(
        "afbeb0f07dfbf5419200f2ccb50bb24f"
    )


def oaep(hash_name, mgf_hash_name=None, label=None):
    mgf = HASHES[mgf_hash_name or hash_name]
    return padding.OAEP(mgf=padding.MGF1(algorithm=mgf()), algorithm=HASHES[hash_name](), label=label)


def hash_of(algorithm):
    return "SHA_256" if algorithm.endswith("SHA_256") else "SHA_1"


def encrypt(public, algorithm, material, *, aes_key=None, rsa_hash=None, wrap=None):
    """EncryptedKeyMaterial as an AWS client makes it; keyword arguments
    make deliberately wrong variants."""
    h = rsa_hash or hash_of(algorithm)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep(h))
    k = aes_key if aes_key is not None else os.urandom(32)
    wrapped = (wrap or aes_key_wrap_with_padding)(k, material)
    return public.encrypt(k, oaep(h)) + wrapped


def main():
    self_check()
    keys, cases = [], []

    def case(description, spec, algorithm, material, ciphertext, result):
        cases.append(
            {
                "description": description,
                "key_spec": spec,
                "wrapping_algorithm": algorithm,
                "material": material.hex(),
                "encrypted_key_material": ciphertext.hex(),
                "result": result,
            }
        )

    for bits in (2048, 3072, 4096):
        spec = f"RSA_{bits}"
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        public = private.public_key()
        keys.append(
            {
                "key_spec": spec,
                "private_key_pkcs8": private.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).hex(),
                "public_key_der": public.public_bytes(
                    serialization.Encoding.DER,
                    serialization.PublicFormat.SubjectPublicKeyInfo,
                ).hex(),
            }
        )
        for algorithm in ALGORITHMS:
            material = os.urandom(32)
            case("AWS client encryption of 32-byte material", spec, algorithm, material,
                 encrypt(public, algorithm, material), "ok")

        if bits != 2048:
            continue
        m = os.urandom(32)
        # Material of the wrong length decrypts but is refused.
        for algorithm, n in [
            ("RSAES_OAEP_SHA_1", 48),
            ("RSAES_OAEP_SHA_256", 16),
            ("RSA_AES_KEY_WRAP_SHA_1", 16),
            ("RSA_AES_KEY_WRAP_SHA_256", 48),
            ("RSA_AES_KEY_WRAP_SHA_256", 31),
        ]:
            material = os.urandom(n)
            case(f"{n}-byte material", spec, algorithm, material,
                 encrypt(public, algorithm, material), "IncorrectKeyMaterial")
        # Deliberately wrong encryptions.
        case("OAEP hash SHA-1 where the token says SHA-256", spec, "RSAES_OAEP_SHA_256", m,
             public.encrypt(m, oaep("SHA_1")), "InvalidCiphertext")
        case("OAEP hash SHA-256 where the token says SHA-1", spec, "RSAES_OAEP_SHA_1", m,
             public.encrypt(m, oaep("SHA_256")), "InvalidCiphertext")
        case("OAEP SHA-1 with MGF1-SHA-256", spec, "RSAES_OAEP_SHA_1", m,
             public.encrypt(m, oaep("SHA_1", "SHA_256")), "InvalidCiphertext")
        case("OAEP SHA-256 with a non-empty label", spec, "RSAES_OAEP_SHA_256", m,
             public.encrypt(m, oaep("SHA_256", label=b"keywarden")), "InvalidCiphertext")
        case("the AES key encrypted with OAEP SHA-256 where the token says SHA-1", spec,
             "RSA_AES_KEY_WRAP_SHA_1", m,
             encrypt(public, "RSA_AES_KEY_WRAP_SHA_1", m, rsa_hash="SHA_256"), "InvalidCiphertext")
        case("a 128-bit AES key (AWS specifies 256 bits)", spec, "RSA_AES_KEY_WRAP_SHA_256", m,
             encrypt(public, "RSA_AES_KEY_WRAP_SHA_256", m, aes_key=os.urandom(16)),
             "InvalidCiphertext")
        case("RFC 3394 key wrap without padding instead of RFC 5649", spec,
             "RSA_AES_KEY_WRAP_SHA_256", m,
             encrypt(public, "RSA_AES_KEY_WRAP_SHA_256", m, wrap=aes_key_wrap),
             "InvalidCiphertext")
        k1, k2 = os.urandom(32), os.urandom(32)
        case("the material wrapped under another AES key than the one RSA-encrypted", spec,
             "RSA_AES_KEY_WRAP_SHA_256", m,
             public.encrypt(k1, oaep("SHA_256")) + aes_key_wrap_with_padding(k2, m),
             "InvalidCiphertext")

    doc = {
        "description": "Imported key material (BYOK): EncryptedKeyMaterial for the four AWS KMS "
        "wrapping algorithms under RSA key pairs given as PKCS#8. result is 'ok' (material must "
        "come back), 'IncorrectKeyMaterial' or 'InvalidCiphertext'.",
        "generator": "tests/vectors/make_import_vectors.py, Python cryptography "
        + cryptography.__version__,
        "keys": keys,
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
