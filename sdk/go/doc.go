// Package payrail is the Go SDK for writing a payrail payment gateway.
//
// A gateway consumes its topic gateway.<id>.requests, opens the card sealed to its
// X25519 key, decides, and reports the outcome to payrail's CallbackService with a
// signed call. docs/callbacks.md in the payrail repository is the contract; this
// package implements it, as the Python SDK (gateway_sdk) does:
//
//   - wire formats (FormatByName: "json", "soap", "protobuf"): Request and Result to
//     bytes and back, single results and batches, with every field rule and limit of
//     the contract; a decoder refuses what payrail would refuse, with a *FormatError;
//   - sealing (Open, OpenCard, Seal, SealCard): the card envelope, version 1;
//   - signing (Sign, Verify): the x-payrail-signature header;
//   - reporting (CallbackClient, ResultBatcher): signed ReportResult and ReportResults
//     calls with retries;
//   - the Worker, which runs a Handler against the topic.
//
// Errors are values: *FormatError, *SealingError and *SignatureError carry a stable
// Reason and match errors.Is against the Err* sentinels. No error message contains
// input, card data or secrets.
package payrail
