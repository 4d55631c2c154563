/**
 * Card data sealed to one gateway's X25519 public key (envelope version 1; the
 * algorithm is docs/callbacks.md, "Card sealing"):
 *
 *     shared = X25519(ephemeral_private, recipient_public)        (all zero: refused)
 *     key    = HKDF-SHA256(shared, salt = ephemeral_public || recipient_public,
 *                          info = "payrail card seal v1", 32 bytes)
 *     ct+tag = AES-256-GCM(key, 12-byte nonce, plaintext, associated data = payment id)
 *     envelope = 0x01 || ephemeral_public (32) || nonce (12) || ct+tag
 *
 * Everything is `node:crypto`; raw 32-byte X25519 keys are wrapped in their fixed
 * PKCS#8 / SPKI DER prefixes to become KeyObjects. Every failure to open an envelope is
 * the same {@link SealingError}, which says nothing about the content.
 */

import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from "node:crypto";
import { inspect } from "node:util";

import { SealingError } from "./errors.js";
import { JsonNumber, JsonSyntaxError, canonicalJson, decodeUtf8, parseJson } from "./json.js";

export const ENVELOPE_VERSION = 1;
export const HKDF_INFO = "payrail card seal v1";
export const PUBLIC_KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const KEY_BYTES = 32;
const HEADER_BYTES = 1 + PUBLIC_KEY_BYTES + NONCE_BYTES;
// A card document is under 700 bytes even with a 100-character name of 4-byte
// characters; 1 KiB bounds what an envelope may make us decrypt and parse.
export const PLAINTEXT_MAX_BYTES = 1024;
export const ENVELOPE_MIN_BYTES = HEADER_BYTES + TAG_BYTES;
export const ENVELOPE_MAX_BYTES = HEADER_BYTES + PLAINTEXT_MAX_BYTES + TAG_BYTES;
export const ASSOCIATED_DATA_MAX_BYTES = 256;
export const PAN_MIN_DIGITS = 12;
export const PAN_MAX_DIGITS = 19;
export const HOLDER_NAME_MAX_CHARS = 100;

// The DER around a raw X25519 key (RFC 8410): PKCS#8 for a private key, SPKI for a
// public one. Both are fixed-length, so a prefix is all there is to it.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");
const PEM_PREFIX = "-----BEGIN";
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const REDACTED = "<redacted>";

// ------------------------------------------------------------------------------ keys

function isX25519(key: KeyObject): boolean {
  return key.asymmetricKeyType === "x25519";
}

/** A gateway's key pair: keep the private key secret, register the public one. */
export function generateKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync("x25519");
}

/** An X25519 private key from 32 raw bytes or unencrypted PKCS#8 PEM. */
export function loadPrivateKey(data: Uint8Array): KeyObject {
  try {
    const buffer = Buffer.from(data);
    if (buffer.subarray(0, PEM_PREFIX.length).toString("latin1") === PEM_PREFIX) {
      const key = createPrivateKey({ key: buffer, format: "pem" });
      if (isX25519(key)) return key;
    } else if (buffer.length === PUBLIC_KEY_BYTES) {
      return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, buffer]), format: "der", type: "pkcs8" });
    }
  } catch {
    // fall through: one error whatever was wrong
  }
  throw new SealingError("invalid_key");
}

/** An X25519 public key from 32 raw bytes (the registry's form) or SPKI PEM. */
export function loadPublicKey(data: Uint8Array): KeyObject {
  try {
    const buffer = Buffer.from(data);
    if (buffer.subarray(0, PEM_PREFIX.length).toString("latin1") === PEM_PREFIX) {
      const key = createPublicKey({ key: buffer, format: "pem" });
      if (isX25519(key)) return key;
    } else if (buffer.length === PUBLIC_KEY_BYTES) {
      return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, buffer]), format: "der", type: "spki" });
    }
  } catch {
    // fall through
  }
  throw new SealingError("invalid_key");
}

/** The 32 raw bytes of a public key (the form the gateway registry stores). */
export function publicKeyToRaw(key: KeyObject): Buffer {
  const publicKey = key.type === "private" ? createPublicKey(key) : key;
  const der = publicKey.export({ format: "der", type: "spki" });
  return der.subarray(der.length - PUBLIC_KEY_BYTES);
}

/** The 32 raw bytes of a private key (the form of the sandbox's key files). */
export function privateKeyToRaw(key: KeyObject): Buffer {
  const der = key.export({ format: "der", type: "pkcs8" });
  return der.subarray(der.length - PUBLIC_KEY_BYTES);
}

function asPublicKey(key: KeyObject | Uint8Array): KeyObject {
  if (key instanceof Uint8Array) return loadPublicKey(key);
  if (key.type !== "public" || !isX25519(key)) throw new SealingError("invalid_key");
  return key;
}

// ------------------------------------------------------------------------- envelope

/** A version-1 envelope. Holds ciphertext only. */
export class SealedCard {
  readonly ephemeralPublicKey: Buffer;
  readonly nonce: Buffer;
  /** The AES-GCM ciphertext followed by the 16-byte tag. */
  readonly ciphertext: Buffer;

  constructor(ephemeralPublicKey: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array) {
    if (
      ephemeralPublicKey.length !== PUBLIC_KEY_BYTES ||
      nonce.length !== NONCE_BYTES ||
      ciphertext.length < TAG_BYTES ||
      ciphertext.length > PLAINTEXT_MAX_BYTES + TAG_BYTES
    ) {
      throw new SealingError("malformed");
    }
    this.ephemeralPublicKey = Buffer.from(ephemeralPublicKey);
    this.nonce = Buffer.from(nonce);
    this.ciphertext = Buffer.from(ciphertext);
    Object.freeze(this);
  }

  /** version || ephemeral public key || nonce || ciphertext+tag */
  toBytes(): Buffer {
    return Buffer.concat([Buffer.of(ENVELOPE_VERSION), this.ephemeralPublicKey, this.nonce, this.ciphertext]);
  }

  static fromBytes(data: Uint8Array): SealedCard {
    if (data.length < ENVELOPE_MIN_BYTES || data.length > ENVELOPE_MAX_BYTES) {
      throw new SealingError("malformed");
    }
    if (data[0] !== ENVELOPE_VERSION) throw new SealingError("unsupported_version");
    return new SealedCard(
      data.subarray(1, 1 + PUBLIC_KEY_BYTES),
      data.subarray(1 + PUBLIC_KEY_BYTES, HEADER_BYTES),
      data.subarray(HEADER_BYTES),
    );
  }

  /** Standard base64 with padding (RFC 4648 section 4), no line breaks. */
  toBase64(): string {
    return this.toBytes().toString("base64");
  }

  /** Strict standard base64: padding required, no white space. */
  static fromBase64(text: string): SealedCard {
    // Checked before decoding so an oversized string costs nothing.
    if (
      typeof text !== "string" ||
      text.length > 4 * Math.floor((ENVELOPE_MAX_BYTES + 2) / 3) ||
      text.length % 4 !== 0 ||
      !BASE64_RE.test(text)
    ) {
      throw new SealingError("malformed");
    }
    return SealedCard.fromBytes(Buffer.from(text, "base64"));
  }
}

// -------------------------------------------------------------------------- sealing

function deriveKey(shared: Uint8Array, ephemeralPublic: Uint8Array, recipientPublic: Uint8Array): Buffer {
  const salt = Buffer.concat([ephemeralPublic, recipientPublic]);
  return Buffer.from(hkdfSync("sha256", shared, salt, Buffer.from(HKDF_INFO, "ascii"), KEY_BYTES));
}

/** X25519, refusing an all-zero result (a low-order public key): as one error. */
function exchange(privateKey: KeyObject, publicKey: KeyObject, reason: "invalid_key" | "unseal_failed"): Buffer {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    throw new SealingError(reason);
  }
  if (shared.every((byte) => byte === 0)) throw new SealingError(reason);
  return shared;
}

function checkAssociatedData(associatedData: Uint8Array): void {
  if (!(associatedData instanceof Uint8Array) || associatedData.length === 0) {
    throw new TypeError("associatedData is non-empty bytes (the payment id)");
  }
  if (associatedData.length > ASSOCIATED_DATA_MAX_BYTES) {
    throw new RangeError(`associatedData is at most ${ASSOCIATED_DATA_MAX_BYTES} bytes`);
  }
}

/**
 * Sealing with given randomness. Only {@link seal} (fresh randomness) and the published
 * test vector, which must be reproducible, call this.
 */
export function sealWith(
  ephemeralPrivate: KeyObject,
  nonce: Uint8Array,
  recipientPublicKey: KeyObject | Uint8Array,
  plaintext: Uint8Array,
  associatedData: Uint8Array,
): SealedCard {
  if (plaintext.length > PLAINTEXT_MAX_BYTES) {
    throw new RangeError(`plaintext is at most ${PLAINTEXT_MAX_BYTES} bytes`);
  }
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`nonce is ${NONCE_BYTES} bytes`);
  checkAssociatedData(associatedData);
  const recipient = asPublicKey(recipientPublicKey);
  const ephemeralPublic = publicKeyToRaw(ephemeralPrivate);
  const shared = exchange(ephemeralPrivate, recipient, "invalid_key");
  const key = deriveKey(shared, ephemeralPublic, publicKeyToRaw(recipient));
  const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return new SealedCard(ephemeralPublic, nonce, ciphertext);
}

/** Encrypt `plaintext` so only the holder of the matching private key reads it,
 * bound to `associatedData`. */
export function seal(
  recipientPublicKey: KeyObject | Uint8Array,
  plaintext: Uint8Array,
  associatedData: Uint8Array,
): SealedCard {
  return sealWith(generateKeyPair().privateKey, randomBytes(NONCE_BYTES), recipientPublicKey, plaintext, associatedData);
}

/** The plaintext of an envelope sealed to `privateKey`'s public key with the same
 * associated data; {@link SealingError} otherwise (never partial output). */
export function unseal(privateKey: KeyObject, sealed: SealedCard | Uint8Array, associatedData: Uint8Array): Buffer {
  checkAssociatedData(associatedData);
  if (privateKey.type !== "private" || !isX25519(privateKey)) throw new SealingError("invalid_key");
  const envelope = sealed instanceof SealedCard ? sealed : SealedCard.fromBytes(sealed);
  let ephemeral: KeyObject;
  try {
    ephemeral = loadPublicKey(envelope.ephemeralPublicKey);
  } catch {
    throw new SealingError("unseal_failed");
  }
  const shared = exchange(privateKey, ephemeral, "unseal_failed");
  const key = deriveKey(shared, envelope.ephemeralPublicKey, publicKeyToRaw(privateKey));
  const body = envelope.ciphertext.subarray(0, envelope.ciphertext.length - TAG_BYTES);
  const tag = envelope.ciphertext.subarray(envelope.ciphertext.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, envelope.nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData);
    decipher.setAuthTag(tag);
    // Only returned once final() has checked the tag: no partial output escapes.
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    throw new SealingError("unseal_failed");
  }
}

// ---------------------------------------------------------------------------- cards

/** BIN (first six) and last four, the rest `*`: `424242******4242`. */
export function maskCardNumber(number: string): string {
  return number.slice(0, 6) + "*".repeat(Math.max(number.length - 10, 0)) + number.slice(-4);
}

export interface CardInit {
  number: string;
  expMonth: number;
  expYear: number;
  /** Absent (null) when payrail holds none: it keeps a CVC only until the first dispatch. */
  cvc?: string | null;
  holderName?: string;
}

const CARD_KEYS = new Set(["number", "exp_month", "exp_year", "holder_name", "cvc"]);

/**
 * A card as sealed for a gateway. `toString`, `toJSON` and `util.inspect` show the
 * masked number only, never the CVC or the holder's name, so a card that reaches a log
 * line by mistake leaks nothing. Read the fields through the getters.
 */
export class Card {
  readonly #number: string;
  readonly #expMonth: number;
  readonly #expYear: number;
  readonly #cvc: string | null;
  readonly #holderName: string;

  constructor(init: CardInit) {
    // Messages name the field, never the value: they may reach a log.
    const { number, expMonth, expYear } = init;
    const cvc = init.cvc ?? null;
    const holderName = init.holderName ?? "";
    if (typeof number !== "string" || !/^[0-9]+$/.test(number) || number.length < PAN_MIN_DIGITS || number.length > PAN_MAX_DIGITS) {
      throw new RangeError(`number is ${PAN_MIN_DIGITS} to ${PAN_MAX_DIGITS} ASCII digits`);
    }
    if (!Number.isInteger(expMonth) || expMonth < 1 || expMonth > 12) {
      throw new RangeError("expMonth is an integer from 1 to 12");
    }
    if (!Number.isInteger(expYear) || expYear < 1000 || expYear > 9999) {
      throw new RangeError("expYear is an integer of four digits");
    }
    if (cvc !== null && (typeof cvc !== "string" || !/^[0-9]{3,4}$/.test(cvc))) {
      throw new RangeError("cvc is null or 3 to 4 ASCII digits");
    }
    if (typeof holderName !== "string" || [...holderName].length > HOLDER_NAME_MAX_CHARS) {
      throw new RangeError(`holderName is a string of at most ${HOLDER_NAME_MAX_CHARS} characters`);
    }
    if (/[\uD800-\uDFFF]/u.test(holderName)) throw new RangeError("holderName is not valid Unicode text");
    this.#number = number;
    this.#expMonth = expMonth;
    this.#expYear = expYear;
    this.#cvc = cvc;
    this.#holderName = holderName;
  }

  get number(): string {
    return this.#number;
  }

  get expMonth(): number {
    return this.#expMonth;
  }

  get expYear(): number {
    return this.#expYear;
  }

  get cvc(): string | null {
    return this.#cvc;
  }

  get holderName(): string {
    return this.#holderName;
  }

  get maskedNumber(): string {
    return maskCardNumber(this.#number);
  }

  /** The sealed document: UTF-8 JSON, sorted keys, no white space, `cvc` left out
   * when there is none. */
  toJsonBytes(): Buffer {
    const document: Record<string, string | number> = {
      number: this.#number,
      exp_month: this.#expMonth,
      exp_year: this.#expYear,
      holder_name: this.#holderName,
    };
    if (this.#cvc !== null) document.cvc = this.#cvc;
    return Buffer.from(canonicalJson(document), "utf8");
  }

  /** Strict: an object with exactly the documented keys and types. */
  static fromJsonBytes(data: Uint8Array): Card {
    let document;
    try {
      document = parseJson(decodeUtf8(data));
    } catch (error) {
      if (error instanceof JsonSyntaxError) throw new RangeError("not a card document");
      throw error;
    }
    if (!(document instanceof Map)) throw new RangeError("not a card document");
    for (const key of ["number", "exp_month", "exp_year", "holder_name"]) {
      if (!document.has(key)) throw new RangeError("not a card document");
    }
    for (const key of document.keys()) {
      if (!CARD_KEYS.has(key)) throw new RangeError("not a card document");
    }
    const cvc = document.get("cvc");
    return new Card({
      number: document.get("number") as string,
      expMonth: smallInt(document.get("exp_month")),
      expYear: smallInt(document.get("exp_year")),
      cvc: cvc === undefined || cvc === null ? null : (cvc as string),
      holderName: document.get("holder_name") as string,
    });
  }

  toString(): string {
    return `Card(number=${this.maskedNumber}, expMonth=${this.#expMonth}, expYear=${this.#expYear}, cvc=${REDACTED}, holderName=${REDACTED})`;
  }

  toJSON(): Record<string, string> {
    return { number: this.maskedNumber, cvc: REDACTED, holderName: REDACTED };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

function smallInt(value: unknown): number {
  // A JSON integer within ±2^53; anything else is refused by the Card constructor.
  if (value instanceof JsonNumber && value.isInteger && value.text.length <= 15) return Number(value.text);
  return Number.NaN;
}

function paymentAd(paymentId: string): Buffer {
  if (typeof paymentId !== "string" || paymentId.length === 0) {
    throw new TypeError("paymentId is a non-empty string");
  }
  return Buffer.from(paymentId, "utf8");
}

/** Seal a card for one gateway, bound to one payment (its id, UTF-8, is the
 * associated data). */
export function sealCard(recipientPublicKey: KeyObject | Uint8Array, card: Card, paymentId: string): SealedCard {
  return seal(recipientPublicKey, card.toJsonBytes(), paymentAd(paymentId));
}

/** Open a card sealed to this gateway for `paymentId`. A tampered, misdirected or
 * foreign envelope and a document that is not a card all raise the same
 * {@link SealingError}. */
export function unsealCard(privateKey: KeyObject, sealed: SealedCard | Uint8Array, paymentId: string): Card {
  const plaintext = unseal(privateKey, sealed, paymentAd(paymentId));
  try {
    return Card.fromJsonBytes(plaintext);
  } catch {
    throw new SealingError("unseal_failed");
  } finally {
    plaintext.fill(0); // the only full copy of the document we made
  }
}
