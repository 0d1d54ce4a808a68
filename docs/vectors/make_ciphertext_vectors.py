"""Generates the ciphertext-blob known-answer vectors from the specification
in docs/ciphertext-format.md, with an AES-GCM implementation independent of
Keywarden's (pyca/cryptography). Run: python3 docs/vectors/make_ciphertext_vectors.py
"""
import json
import struct
import uuid

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def canonical_context(ctx):
    out = struct.pack(">H", len(ctx))
    for k in sorted(ctx, key=lambda s: s.encode()):
        kb, vb = k.encode(), ctx[k].encode()
        out += struct.pack(">H", len(kb)) + kb + struct.pack(">H", len(vb)) + vb
    return out


def blob(material, key_id, version, nonce, ctx, plaintext):
    header = b"\x01" + uuid.UUID(key_id).bytes + struct.pack(">I", version)
    ct = AESGCM(material).encrypt(nonce, plaintext, header + canonical_context(ctx))
    return header + nonce + ct


CASES = [
    ("one byte, empty context", bytes(range(32)), "00000000-0000-4000-8000-000000000001", 1, bytes(12), {}, b"\x00"),
    ("text with a two-pair context", bytes([0xA5] * 32), "1234abcd-12ab-34cd-56ef-1234567890ab", 1,
     bytes(range(12)), {"tenant": "a", "purpose": "test"}, b"hello keywarden"),
    ("32-byte data key, version 7, unicode context", bytes(range(100, 132)), "ffffffff-ffff-4fff-bfff-ffffffffffff", 7,
     bytes([0xFF] * 12), {"bucket": "photos", "\u00e9t\u00e9": "\u2603"}, bytes(range(32))),
    ("4096-byte maximum plaintext", bytes([7] * 32), "0f0e0d0c-0b0a-4908-8706-050403020100", 4294967295,
     bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), {"": ""}, bytes(i % 251 for i in range(4096))),
]

vectors = []
for desc, material, key_id, version, nonce, ctx, pt in CASES:
    vectors.append({
        "description": desc,
        "material": material.hex(),
        "key_id": key_id,
        "version": version,
        "nonce": nonce.hex(),
        "context": ctx,
        "plaintext": pt.hex(),
        "blob": blob(material, key_id, version, nonce, ctx, pt).hex(),
    })
print(json.dumps({"format": "keywarden ciphertext blob v1", "vectors": vectors}, indent=2, ensure_ascii=False))
