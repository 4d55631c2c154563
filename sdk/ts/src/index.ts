/**
 * payrail gateway SDK for TypeScript. See README.md; docs/callbacks.md in the payrail
 * repository is the contract this implements.
 */

export { FormatError, SealingError, SignatureError } from "./errors.js";
export type { FormatReason, SealingReason, SignatureReason } from "./errors.js";
export {
  BATCH_ENCODED_MAX_BYTES,
  BATCH_RESULTS_MAX,
  ENCODED_MAX_BYTES,
  KINDS,
  OUTCOMES,
  gatewayMerchant,
  gatewayRequest,
  gatewayResult,
  maskedCard,
} from "./model.js";
export type {
  GatewayMerchant,
  GatewayRequest,
  GatewayResult,
  Kind,
  MaskedCard,
  Outcome as ResultOutcome,
  ResultFields,
  RequestFields,
  WireFormat,
} from "./model.js";
export { JSON_FORMAT, PROTOBUF_FORMAT, SOAP_FORMAT, formatNames, getFormat } from "./formats/index.js";
export type { FormatName } from "./formats/index.js";
export {
  Card,
  SealedCard,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKey,
  maskCardNumber,
  privateKeyToRaw,
  publicKeyToRaw,
  seal,
  sealCard,
  unseal,
  unsealCard,
} from "./sealing.js";
export type { CardInit } from "./sealing.js";
export {
  CallbackSecret,
  SIGNATURE_HEADER,
  SignatureVerifier,
  TOLERANCE_S,
  parseHeader,
  sign,
  signWithSecrets,
  signatureMetadata,
  verify,
} from "./signing.js";
export type { ParsedSignature, SecretLike, VerifierOptions } from "./signing.js";
export { CallbackClient, REQUEST_ID_KEY, ResultBatcher, connect } from "./reporting.js";
export type { CallbackClientOptions, Disposition, Reported, ResultBatcherOptions } from "./reporting.js";
export { GatewayWorker, approve, decline, requestIdFrom, resultFor } from "./worker.js";
export type { GatewayWorkerOptions, Handler, KafkaOptions, Outcome, RequestRecord } from "./worker.js";
export { Logger, currentRequestId, parseLevel, redact, withRequestId } from "./log.js";
export type { LogLevel } from "./log.js";
