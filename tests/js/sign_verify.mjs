// Keywarden through the AWS SDK for JavaScript v3: asymmetric signing and
// HMAC, with the signatures checked by node:crypto on GetPublicKey's DER.
// Reads KW_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION;
// prints one JSON line of results; exits non-zero on any failure.
import { createPublicKey, createHmac, verify as nodeVerify, constants } from "node:crypto";
import {
  KMSClient, CreateKeyCommand, SignCommand, VerifyCommand, GetPublicKeyCommand,
  GenerateMacCommand, VerifyMacCommand, KMSInvalidSignatureException,
} from "@aws-sdk/client-kms";

const kms = new KMSClient({ endpoint: process.env.KW_ENDPOINT, maxAttempts: 1 });
const message = new TextEncoder().encode("signed through the JavaScript SDK");
const results = {};

async function createKey(KeySpec, KeyUsage) {
  const out = await kms.send(new CreateKeyCommand({ KeySpec, KeyUsage }));
  return out.KeyMetadata.KeyId;
}

async function signAndCheck(spec, algorithm, nodeHash, nodeOptions) {
  const KeyId = await createKey(spec, "SIGN_VERIFY");
  const { Signature } = await kms.send(new SignCommand({
    KeyId, Message: message, MessageType: "RAW", SigningAlgorithm: algorithm,
  }));
  const { PublicKey } = await kms.send(new GetPublicKeyCommand({ KeyId }));
  const key = createPublicKey({ key: Buffer.from(PublicKey), format: "der", type: "spki" });
  const locally = nodeVerify(nodeHash, message, { key, ...nodeOptions }, Buffer.from(Signature));
  if (!locally) throw new Error(`${algorithm}: node:crypto rejects the signature`);
  const { SignatureValid } = await kms.send(new VerifyCommand({
    KeyId, Message: message, Signature, SigningAlgorithm: algorithm,
  }));
  if (SignatureValid !== true) throw new Error(`${algorithm}: Verify said ${SignatureValid}`);
  const tampered = Uint8Array.from(Signature);
  tampered[tampered.length - 1] ^= 1;
  try {
    await kms.send(new VerifyCommand({ KeyId, Message: message, Signature: tampered, SigningAlgorithm: algorithm }));
    throw new Error(`${algorithm}: a tampered signature verified`);
  } catch (e) {
    if (!(e instanceof KMSInvalidSignatureException)) throw e;
  }
  results[algorithm] = "ok";
}

await signAndCheck("ECC_NIST_P256", "ECDSA_SHA_256", "sha256", {});
await signAndCheck("RSA_2048", "RSASSA_PSS_SHA_256", "sha256", {
  padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
});
await signAndCheck("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_512", "sha512", {});
await signAndCheck("ECC_NIST_EDWARDS25519", "ED25519_SHA_512", null, {});

const macKey = await createKey("HMAC_256", "GENERATE_VERIFY_MAC");
const { Mac } = await kms.send(new GenerateMacCommand({ KeyId: macKey, Message: message, MacAlgorithm: "HMAC_SHA_256" }));
const { MacValid } = await kms.send(new VerifyMacCommand({ KeyId: macKey, Message: message, Mac, MacAlgorithm: "HMAC_SHA_256" }));
if (MacValid !== true || Mac.length !== 32) throw new Error("HMAC round trip failed");
// The key never leaves the server, so the MAC cannot be recomputed here; a
// local HMAC under some other key must differ.
if (Buffer.compare(Buffer.from(Mac), createHmac("sha256", "not the key").update(message).digest()) === 0) {
  throw new Error("MAC equals an unrelated HMAC");
}
results.HMAC_SHA_256 = "ok";
console.log(JSON.stringify(results));
