package payrail

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// docs/vectors/gateway-vectors.json, recomputed by the Go SDK: the Python and
// TypeScript suites recompute the same file, so a change in any implementation that
// breaks interoperability fails all three.

type sigVector struct {
	Name                string `json:"name"`
	Format              string `json:"format"`
	SecretsHex          []string
	Timestamp           int64  `json:"timestamp"`
	PayloadHex          string `json:"payload_hex"`
	DeliveredPayloadHex string `json:"delivered_payload_hex"`
	Header              string `json:"header"`
	Now                 int64  `json:"now"`
	Result              string `json:"result"`
	Results             []struct {
		EventID   string `json:"event_id"`
		PaymentID string `json:"payment_id"`
		Outcome   string `json:"outcome"`
	} `json:"results"`
}

type sealVector map[string]string

type requestFields struct {
	RequestID    string      `json:"request_id"`
	PaymentID    string      `json:"payment_id"`
	Attempt      int64       `json:"attempt"`
	Kind         string      `json:"kind"`
	AmountMinor  string      `json:"amount_minor"`
	CurrencyCode string      `json:"currency_code"`
	Card         *MaskedCard `json:"-"`
	CardDoc      *struct {
		Brand        string `json:"brand"`
		MaskedNumber string `json:"masked_number"`
	} `json:"card"`
	SealedCardBase64 *string `json:"sealed_card_base64"`
	Merchant         *struct {
		MerchantID   string `json:"merchant_id"`
		Name         string `json:"name"`
		CategoryCode string `json:"category_code"`
		CountryCode  string `json:"country_code"`
		City         string `json:"city"`
	} `json:"merchant"`
	CallbackDeadline int64  `json:"callback_deadline"`
	Description      string `json:"description"`
}

type resultFields struct {
	EventID          string `json:"event_id"`
	PaymentID        string `json:"payment_id"`
	Outcome          string `json:"outcome"`
	FailureCode      string `json:"failure_code"`
	FailureMessage   string `json:"failure_message"`
	GatewayReference string `json:"gateway_reference"`
	OccurTime        int64  `json:"occur_time"`
}

type vectorFile struct {
	Signature      []sigVector `json:"signature"`
	BatchSignature []sigVector `json:"batch_signature"`
	Seal           sealVector  `json:"seal"`
	Requests       []struct {
		Name       string        `json:"name"`
		Format     string        `json:"format"`
		PayloadHex string        `json:"payload_hex"`
		Fields     requestFields `json:"fields"`
	} `json:"requests"`
	Results []struct {
		Name       string       `json:"name"`
		Format     string       `json:"format"`
		PayloadHex string       `json:"payload_hex"`
		Fields     resultFields `json:"fields"`
	} `json:"results"`
	Refused []struct {
		Name       string `json:"name"`
		Format     string `json:"format"`
		What       string `json:"what"`
		PayloadHex string `json:"payload_hex"`
	} `json:"refused"`
}

func (v *sigVector) UnmarshalJSON(data []byte) error {
	type plain sigVector
	var raw struct {
		plain
		SecretsHex []string `json:"secrets_hex"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*v = sigVector(raw.plain)
	v.SecretsHex = raw.SecretsHex
	return nil
}

func loadVectors(t *testing.T) *vectorFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "vectors", "gateway-vectors.json"))
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	var file vectorFile
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatalf("parse vectors: %v", err)
	}
	return &file
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex: %v", err)
	}
	return b
}

func TestVectorSectionsAreThere(t *testing.T) {
	v := loadVectors(t)
	if len(v.Signature) == 0 || len(v.BatchSignature) == 0 || len(v.Requests) == 0 ||
		len(v.Results) == 0 || len(v.Refused) == 0 || v.Seal["envelope_hex"] == "" {
		t.Fatal("a section of the vector file is empty")
	}
	formats := map[string]bool{}
	for _, r := range v.Results {
		formats[r.Format] = true
	}
	if len(formats) != 3 {
		t.Fatalf("results cover formats %v, want all three", formats)
	}
}

func checkSignatureVector(t *testing.T, v sigVector) {
	t.Helper()
	var secrets []Secret
	for _, h := range v.SecretsHex {
		s, err := NewSecret(unhex(t, h))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, s)
	}
	payload := unhex(t, v.PayloadHex)
	header, err := Sign(payload, secrets, v.Timestamp)
	if err != nil || header != v.Header {
		t.Fatalf("Sign = %q, %v; want %q", header, err, v.Header)
	}
	delivered := payload
	if v.DeliveredPayloadHex != "" {
		delivered = unhex(t, v.DeliveredPayloadHex)
	}
	if v.Result == "accept" {
		// Rotation: a verifier holding either secret alone accepts.
		for _, s := range secrets {
			if err := Verify(delivered, v.Header, []Secret{s}, v.Now); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		}
		return
	}
	err = Verify(delivered, v.Header, secrets, v.Now)
	var se *SignatureError
	if !errors.As(err, &se) || "refuse "+string(se.Reason) != v.Result {
		t.Fatalf("Verify = %v, want %s", err, v.Result)
	}
}

func TestVectorSignatures(t *testing.T) {
	for _, v := range loadVectors(t).Signature {
		t.Run(v.Name, func(t *testing.T) { checkSignatureVector(t, v) })
	}
}

func TestVectorBatchSignatures(t *testing.T) {
	for _, v := range loadVectors(t).BatchSignature {
		t.Run(v.Name, func(t *testing.T) {
			format, err := FormatByName(v.Format)
			if err != nil {
				t.Fatal(err)
			}
			payload := unhex(t, v.PayloadHex)
			results, err := format.DecodeResults(payload)
			if err != nil {
				t.Fatalf("DecodeResults: %v", err)
			}
			if len(results) != len(v.Results) {
				t.Fatalf("%d results, want %d", len(results), len(v.Results))
			}
			for i, want := range v.Results {
				got := results[i]
				if got.EventID != want.EventID || got.PaymentID != want.PaymentID || string(got.Outcome) != want.Outcome {
					t.Fatalf("result %d = %+v, want %+v", i, got, want)
				}
			}
			// payrail's encoder wrote these bytes; ours writes the same ones.
			again, err := format.EncodeResults(results)
			if err != nil || !bytes.Equal(again, payload) {
				t.Fatalf("EncodeResults differs from the vector (%v):\n%s\n%s", err, again, payload)
			}
			checkSignatureVector(t, v)
		})
	}
}

func TestVectorSealStepByStep(t *testing.T) {
	s := loadVectors(t).Seal
	recipient, err := LoadPrivateKey(unhex(t, s["recipient_private_key_hex"]))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(recipient.PublicKey().Bytes()); got != s["recipient_public_key_hex"] {
		t.Fatalf("recipient public key %s", got)
	}
	ephemeral, err := ecdh.X25519().NewPrivateKey(unhex(t, s["ephemeral_private_key_hex"]))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(ephemeral.PublicKey().Bytes()); got != s["ephemeral_public_key_hex"] {
		t.Fatalf("ephemeral public key %s", got)
	}
	shared, err := ephemeral.ECDH(recipient.PublicKey())
	if err != nil || hex.EncodeToString(shared) != s["shared_secret_hex"] {
		t.Fatalf("shared secret %x, %v", shared, err)
	}
	// The recipient computes the same secret from its side.
	if other, _ := recipient.ECDH(ephemeral.PublicKey()); !bytes.Equal(other, shared) {
		t.Fatal("the two sides disagree on the shared secret")
	}
	salt := append(ephemeral.PublicKey().Bytes(), recipient.PublicKey().Bytes()...)
	if hex.EncodeToString(salt) != s["hkdf_salt_hex"] || s["hkdf_info_text"] != hkdfInfo {
		t.Fatal("HKDF salt or info differ")
	}
	key, err := deriveKey(shared, ephemeral.PublicKey().Bytes(), recipient.PublicKey().Bytes())
	if err != nil || hex.EncodeToString(key) != s["aes_key_hex"] {
		t.Fatalf("AES key %x, %v", key, err)
	}
	plaintext := unhex(t, s["plaintext_hex"])
	if string(plaintext) != s["plaintext_text"] {
		t.Fatal("plaintext_text and plaintext_hex differ")
	}
	sealed, err := sealWith(ephemeral, unhex(t, s["nonce_hex"]), recipient.PublicKey(), plaintext, []byte(s["associated_data_text"]))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sealed.Bytes()) != s["envelope_hex"] || sealed.Base64() != s["envelope_base64"] {
		t.Fatalf("envelope differs:\n%x", sealed.Bytes())
	}
	parsed, err := ParseSealedCardBase64(s["envelope_base64"])
	if err != nil {
		t.Fatal(err)
	}
	opened, err := Open(recipient, parsed, []byte(s["associated_data_text"]))
	if err != nil || !bytes.Equal(opened, plaintext) {
		t.Fatalf("Open = %q, %v", opened, err)
	}
	card, err := OpenCard(recipient, parsed, s["associated_data_text"])
	if err != nil || !bytes.Equal(card.SealedJSON(), plaintext) {
		t.Fatalf("OpenCard: %v", err)
	}
	// Another payment's id as associated data fails the tag check.
	if _, err := Open(recipient, parsed, []byte("another-payment")); !errors.Is(err, ErrSealing) {
		t.Fatalf("Open with another id = %v", err)
	}
}

func TestVectorRequestsDecode(t *testing.T) {
	v := loadVectors(t)
	key, err := LoadPrivateKey(unhex(t, v.Seal["recipient_private_key_hex"]))
	if err != nil {
		t.Fatal(err)
	}
	for _, vec := range v.Requests {
		t.Run(vec.Name, func(t *testing.T) {
			format, _ := FormatByName(vec.Format)
			payload := unhex(t, vec.PayloadHex)
			r, err := format.DecodeRequest(payload)
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			f := vec.Fields
			amount, _ := strconv.ParseInt(f.AmountMinor, 10, 64)
			if r.RequestID != f.RequestID || r.PaymentID != f.PaymentID || r.Attempt != f.Attempt ||
				r.Kind != f.Kind || r.AmountMinor != amount || r.CurrencyCode != f.CurrencyCode ||
				r.CallbackDeadline != f.CallbackDeadline || r.Description != f.Description {
				t.Fatalf("decoded %+v, want %+v", r, f)
			}
			if (f.Merchant == nil) != (r.Merchant == nil) ||
				f.Merchant != nil && *r.Merchant != (Merchant{f.Merchant.MerchantID, f.Merchant.Name, f.Merchant.CategoryCode, f.Merchant.CountryCode, f.Merchant.City}) {
				t.Fatalf("merchant %+v, want %+v", r.Merchant, f.Merchant)
			}
			if (f.CardDoc == nil) != (r.Card == nil) ||
				f.CardDoc != nil && *r.Card != (MaskedCard{f.CardDoc.Brand, f.CardDoc.MaskedNumber}) {
				t.Fatalf("card %+v, want %+v", r.Card, f.CardDoc)
			}
			// Our encoder writes payrail's bytes exactly (json; soap; protobuf requests
			// are json).
			again, err := format.EncodeRequest(r)
			if err != nil || !bytes.Equal(again, payload) {
				t.Fatalf("EncodeRequest differs (%v):\n%s\n%s", err, again, payload)
			}
			if f.SealedCardBase64 == nil {
				if r.SealedCard != nil {
					t.Fatal("a sealed card where there is none")
				}
				return
			}
			if r.SealedCard == nil || r.SealedCard.Base64() != *f.SealedCardBase64 {
				t.Fatal("sealed card differs")
			}
			// Every SDK opens this card with the seal vector's key, to the same document.
			card, err := OpenCard(key, r.SealedCard, r.PaymentID)
			if err != nil {
				t.Fatalf("OpenCard: %v", err)
			}
			if !bytes.Equal(card.SealedJSON(), unhex(t, v.Seal["plaintext_hex"])) {
				t.Fatalf("card document %s", card.SealedJSON())
			}
		})
	}
}

func TestVectorResultsDecodeAndEncode(t *testing.T) {
	for _, vec := range loadVectors(t).Results {
		t.Run(vec.Name, func(t *testing.T) {
			format, _ := FormatByName(vec.Format)
			payload := unhex(t, vec.PayloadHex)
			r, err := format.DecodeResult(payload)
			if err != nil {
				t.Fatalf("DecodeResult: %v", err)
			}
			f := vec.Fields
			want := Result{f.EventID, f.PaymentID, OutcomeKind(f.Outcome), f.FailureCode, f.FailureMessage, f.GatewayReference, f.OccurTime}
			if *r != want {
				t.Fatalf("decoded %+v, want %+v", *r, want)
			}
			encoded, err := format.EncodeResult(r)
			if err != nil {
				t.Fatal(err)
			}
			back, err := format.DecodeResult(encoded)
			if err != nil || *back != want {
				t.Fatalf("round trip %+v, %v", back, err)
			}
			// Byte for byte what payrail's encoder writes, in every format.
			if !bytes.Equal(encoded, payload) {
				t.Fatalf("EncodeResult differs:\n%s\n%s", encoded, payload)
			}
		})
	}
}

func TestVectorRefused(t *testing.T) {
	for _, vec := range loadVectors(t).Refused {
		t.Run(vec.Name, func(t *testing.T) {
			format, _ := FormatByName(vec.Format)
			payload := unhex(t, vec.PayloadHex)
			var err error
			if vec.What == "request" {
				_, err = format.DecodeRequest(payload)
			} else {
				_, err = format.DecodeResult(payload)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("decoded without a FormatError: %v", err)
			}
		})
	}
}

func TestVectorEnvelopeBase64IsStandard(t *testing.T) {
	s := loadVectors(t).Seal
	raw, _ := base64.StdEncoding.DecodeString(s["envelope_base64"])
	if hex.EncodeToString(raw) != s["envelope_hex"] {
		t.Fatal("envelope_base64 and envelope_hex differ")
	}
}
