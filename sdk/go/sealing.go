package payrail

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Card sealing, envelope version 1 (docs/callbacks.md, "Card sealing"):
//
//	shared = X25519(ephemeral_private, recipient_public)
//	key    = HKDF-SHA256(ikm=shared, salt=ephemeral_public||recipient_public,
//	                     info="payrail card seal v1", length=32)
//	ct||tag = AES-256-GCM(key, nonce (12 random bytes), plaintext, ad=payment id)
//	envelope = 0x01 || ephemeral_public (32) || nonce (12) || ct || tag (16)

// Sizes of the sealing scheme.
const (
	EnvelopeVersion = 1
	PublicKeyBytes  = 32
	NonceBytes      = 12
	TagBytes        = 16
	// PlaintextMaxBytes bounds what an envelope may make a gateway decrypt and parse;
	// a card document is under 700 bytes.
	PlaintextMaxBytes = 1024
	// EnvelopeMinBytes and EnvelopeMaxBytes bound an envelope (61 to 1085 bytes).
	EnvelopeMinBytes = 1 + PublicKeyBytes + NonceBytes + TagBytes
	EnvelopeMaxBytes = EnvelopeMinBytes + PlaintextMaxBytes
	// AssociatedDataMaxBytes bounds the associated data (a payment id).
	AssociatedDataMaxBytes = 256
)

const hkdfInfo = "payrail card seal v1"

// SealingReason says why an envelope or key was not usable; the values are stable.
type SealingReason string

// Reasons of a SealingError.
const (
	// SealingMalformed: not an envelope.
	SealingMalformed SealingReason = "malformed"
	// SealingUnsupportedVersion: an envelope version this SDK does not know.
	SealingUnsupportedVersion SealingReason = "unsupported_version"
	// SealingFailed: wrong key, wrong associated data, tampered, or not a card inside:
	// deliberately not told apart.
	SealingFailed SealingReason = "unseal_failed"
	// SealingInvalidKey: a key that is not an X25519 key (or a low-order one).
	SealingInvalidKey SealingReason = "invalid_key"
)

// ErrSealing matches every *SealingError with errors.Is.
var ErrSealing = errors.New("payrail: sealed card not usable")

// SealingError is an envelope or a key that was not usable. It says nothing about the
// content.
type SealingError struct{ Reason SealingReason }

func (e *SealingError) Error() string { return "payrail: sealed card not usable: " + string(e.Reason) }

// Is makes errors.Is(err, ErrSealing) true for every SealingError.
func (e *SealingError) Is(target error) bool { return target == ErrSealing }

func sealingErr(reason SealingReason) error { return &SealingError{Reason: reason} }

// SealedCard is a version-1 envelope. It holds ciphertext only.
type SealedCard struct{ envelope []byte }

// ParseSealedCard checks the envelope's size and version.
func ParseSealedCard(envelope []byte) (*SealedCard, error) {
	if len(envelope) < EnvelopeMinBytes || len(envelope) > EnvelopeMaxBytes {
		return nil, sealingErr(SealingMalformed)
	}
	if envelope[0] != EnvelopeVersion {
		return nil, sealingErr(SealingUnsupportedVersion)
	}
	return &SealedCard{envelope: append([]byte(nil), envelope...)}, nil
}

// base64MaxChars: the longest base64 text of an envelope, checked before decoding.
const base64MaxChars = 4 * ((EnvelopeMaxBytes + 2) / 3)

// ParseSealedCardBase64 reads the text formats' form: strict standard base64 with
// padding, no white space or line breaks.
func ParseSealedCardBase64(text string) (*SealedCard, error) {
	if len(text) > base64MaxChars {
		return nil, sealingErr(SealingMalformed)
	}
	// encoding/base64 skips \r and \n; the contract allows neither, nor '=' inside.
	body := strings.TrimRight(text, "=")
	if len(text)-len(body) > 2 || !allBytes(body, isBase64Char) {
		return nil, sealingErr(SealingMalformed)
	}
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, sealingErr(SealingMalformed)
	}
	return ParseSealedCard(raw)
}

func isBase64Char(c byte) bool {
	return isDigit(c) || isUpper(c) || c >= 'a' && c <= 'z' || c == '+' || c == '/'
}

// Bytes returns the envelope: version, ephemeral public key, nonce, ciphertext+tag.
func (s *SealedCard) Bytes() []byte { return append([]byte(nil), s.envelope...) }

// Base64 returns the envelope as standard padded base64, as the text formats carry it.
func (s *SealedCard) Base64() string { return base64.StdEncoding.EncodeToString(s.envelope) }

func (s *SealedCard) ephemeralPublic() []byte { return s.envelope[1 : 1+PublicKeyBytes] }
func (s *SealedCard) nonce() []byte {
	return s.envelope[1+PublicKeyBytes : 1+PublicKeyBytes+NonceBytes]
}
func (s *SealedCard) ciphertext() []byte { return s.envelope[1+PublicKeyBytes+NonceBytes:] }

// ------------------------------------------------------------------------- keys

// GenerateKey returns a fresh X25519 key pair's private half: keep it secret and
// register PublicKey().Bytes() with payrail.
func GenerateKey() (*ecdh.PrivateKey, error) { return ecdh.X25519().GenerateKey(rand.Reader) }

// LoadPrivateKey reads an X25519 private key from 32 raw bytes (the sandbox key files'
// content after base64) or unencrypted PKCS#8 PEM.
func LoadPrivateKey(data []byte) (*ecdh.PrivateKey, error) {
	if block, _ := pem.Decode(data); block != nil {
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if k, ok := key.(*ecdh.PrivateKey); err == nil && ok && k.Curve() == ecdh.X25519() {
			return k, nil
		}
		return nil, sealingErr(SealingInvalidKey)
	}
	key, err := ecdh.X25519().NewPrivateKey(data)
	if err != nil {
		return nil, sealingErr(SealingInvalidKey)
	}
	return key, nil
}

// LoadPublicKey reads an X25519 public key from 32 raw bytes (the registry's form) or
// SPKI PEM.
func LoadPublicKey(data []byte) (*ecdh.PublicKey, error) {
	if block, _ := pem.Decode(data); block != nil {
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if k, ok := key.(*ecdh.PublicKey); err == nil && ok && k.Curve() == ecdh.X25519() {
			return k, nil
		}
		return nil, sealingErr(SealingInvalidKey)
	}
	key, err := ecdh.X25519().NewPublicKey(data)
	if err != nil {
		return nil, sealingErr(SealingInvalidKey)
	}
	return key, nil
}

// ----------------------------------------------------------------------- sealing

func deriveKey(shared, ephemeralPublic, recipientPublic []byte) ([]byte, error) {
	salt := append(append(make([]byte, 0, 2*PublicKeyBytes), ephemeralPublic...), recipientPublic...)
	return hkdf.Key(sha256.New, shared, salt, hkdfInfo, 32)
}

func checkAssociatedData(ad []byte) error {
	if len(ad) == 0 || len(ad) > AssociatedDataMaxBytes {
		return fmt.Errorf("payrail: associated data is 1 to %d bytes (the payment id)", AssociatedDataMaxBytes)
	}
	return nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealWith seals with given randomness: Seal draws it; the published test vector,
// which must be reproducible, passes its own.
func sealWith(ephemeral *ecdh.PrivateKey, nonce []byte, recipient *ecdh.PublicKey, plaintext, ad []byte) (*SealedCard, error) {
	if len(plaintext) > PlaintextMaxBytes {
		return nil, fmt.Errorf("payrail: plaintext is at most %d bytes", PlaintextMaxBytes)
	}
	if err := checkAssociatedData(ad); err != nil {
		return nil, err
	}
	if recipient == nil || recipient.Curve() != ecdh.X25519() || len(nonce) != NonceBytes {
		return nil, sealingErr(SealingInvalidKey)
	}
	shared, err := ephemeral.ECDH(recipient)
	if err != nil {
		// A low-order "public key" gives an all-zero shared secret; refuse to seal to it.
		return nil, sealingErr(SealingInvalidKey)
	}
	ephemeralPublic := ephemeral.PublicKey().Bytes()
	key, err := deriveKey(shared, ephemeralPublic, recipient.Bytes())
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	envelope := make([]byte, 0, EnvelopeMinBytes+len(plaintext))
	envelope = append(envelope, EnvelopeVersion)
	envelope = append(envelope, ephemeralPublic...)
	envelope = append(envelope, nonce...)
	envelope = aead.Seal(envelope, nonce, plaintext, ad)
	return &SealedCard{envelope: envelope}, nil
}

// Seal encrypts plaintext (at most PlaintextMaxBytes) so that only the holder of the
// recipient's private key can read it, bound to associatedData (payrail uses the
// payment id). payrail seals cards; gateways use this in their tests.
func Seal(recipient *ecdh.PublicKey, plaintext, associatedData []byte) (*SealedCard, error) {
	ephemeral, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, NonceBytes)
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, err
	}
	return sealWith(ephemeral, nonce, recipient, plaintext, associatedData)
}

// Open returns the plaintext of an envelope sealed to key's public key with the same
// associated data; a *SealingError (SealingFailed) for a wrong key, other associated
// data or any flipped bit, never partial output.
func Open(key *ecdh.PrivateKey, sealed *SealedCard, associatedData []byte) ([]byte, error) {
	if err := checkAssociatedData(associatedData); err != nil {
		return nil, err
	}
	if key == nil || sealed == nil {
		return nil, sealingErr(SealingInvalidKey)
	}
	ephemeral, err := ecdh.X25519().NewPublicKey(sealed.ephemeralPublic())
	if err != nil {
		return nil, sealingErr(SealingFailed)
	}
	shared, err := key.ECDH(ephemeral)
	if err != nil { // an all-zero result: a low-order ephemeral key
		return nil, sealingErr(SealingFailed)
	}
	aesKey, err := deriveKey(shared, sealed.ephemeralPublic(), key.PublicKey().Bytes())
	if err != nil {
		return nil, sealingErr(SealingFailed)
	}
	aead, err := newGCM(aesKey)
	if err != nil {
		return nil, sealingErr(SealingFailed)
	}
	plaintext, err := aead.Open(nil, sealed.nonce(), sealed.ciphertext(), associatedData)
	if err != nil {
		return nil, sealingErr(SealingFailed)
	}
	return plaintext, nil
}

// --------------------------------------------------------------------------- cards

// Card is a card as sealed for a gateway: the only place the full card number exists
// outside payrail's vault. Its fields are read through methods; String, GoString,
// LogValue and MarshalJSON show the masked number only, never the CVC or the holder's
// name, so a Card that reaches a log or an error is harmless. Never store it or put
// it on a queue.
type Card struct {
	number     string
	expMonth   int
	expYear    int
	cvc        string
	holderName string
}

// Limits of a card document.
const (
	CardNumberMinDigits = 12
	CardNumberMaxDigits = 19
	HolderNameMaxChars  = 100
)

// NewCard checks a card's fields; cvc "" means none (payrail keeps a CVC only until
// the first dispatch). Errors name the field, never its value.
func NewCard(number string, expMonth, expYear int, cvc, holderName string) (*Card, error) {
	if len(number) < CardNumberMinDigits || len(number) > CardNumberMaxDigits || !allBytes(number, isDigit) {
		return nil, fmt.Errorf("payrail: card number is %d to %d ASCII digits", CardNumberMinDigits, CardNumberMaxDigits)
	}
	if expMonth < 1 || expMonth > 12 {
		return nil, errors.New("payrail: card exp_month is 1 to 12")
	}
	if expYear < 1000 || expYear > 9999 {
		return nil, errors.New("payrail: card exp_year has four digits")
	}
	if cvc != "" && (len(cvc) < 3 || len(cvc) > 4 || !allBytes(cvc, isDigit)) {
		return nil, errors.New("payrail: card cvc is 3 or 4 ASCII digits")
	}
	// Any text but a lone surrogate (which a decoded document keeps as invalid UTF-8).
	if !utf8.ValidString(holderName) || utf8.RuneCountInString(holderName) > HolderNameMaxChars {
		return nil, fmt.Errorf("payrail: card holder_name is valid text of at most %d characters", HolderNameMaxChars)
	}
	return &Card{number: number, expMonth: expMonth, expYear: expYear, cvc: cvc, holderName: holderName}, nil
}

// Number is the full card number (12 to 19 digits). Never log it.
func (c Card) Number() string { return c.number }

// ExpMonth is 1 to 12.
func (c Card) ExpMonth() int { return c.expMonth }

// ExpYear has four digits.
func (c Card) ExpYear() int { return c.expYear }

// CVC is 3 or 4 digits, or "" when payrail held none.
func (c Card) CVC() string { return c.cvc }

// HolderName may be empty.
func (c Card) HolderName() string { return c.holderName }

// MaskedNumber is BIN and last four around stars: "424242******4242".
func (c Card) MaskedNumber() string { return MaskCardNumber(c.number) }

// MaskCardNumber keeps the first six and last four digits of a card number.
func MaskCardNumber(number string) string {
	if len(number) < 10 {
		return strings.Repeat("*", len(number))
	}
	return number[:6] + strings.Repeat("*", len(number)-10) + number[len(number)-4:]
}

// String shows the masked number and expiry only.
func (c Card) String() string {
	return fmt.Sprintf("Card(number=%s, exp=%02d/%d, cvc=<redacted>, holder_name=<redacted>)",
		c.MaskedNumber(), c.expMonth, c.expYear)
}

// GoString makes %#v as harmless as %v.
func (c Card) GoString() string { return c.String() }

// LogValue makes slog log the masked number only.
func (c Card) LogValue() slog.Value {
	return slog.GroupValue(slog.String("masked_number", c.MaskedNumber()))
}

// MarshalJSON makes encoding/json write the masked number only.
func (c Card) MarshalJSON() ([]byte, error) {
	w := &jsonWriter{}
	w.raw("{")
	w.key("masked_number")
	w.str(c.MaskedNumber())
	w.raw("}")
	return w.buf, nil
}

// SealedJSON is the document payrail seals: UTF-8 JSON, sorted keys, no white space,
// cvc left out when there is none.
func (c Card) SealedJSON() []byte {
	w := &jsonWriter{}
	w.raw("{")
	if c.cvc != "" {
		w.key("cvc")
		w.str(c.cvc)
	}
	w.key("exp_month")
	w.int(int64(c.expMonth))
	w.key("exp_year")
	w.int(int64(c.expYear))
	w.key("holder_name")
	w.str(c.holderName)
	w.key("number")
	w.str(c.number)
	w.raw("}")
	return w.buf
}

// cardFromJSON is strict: an object with exactly the documented keys and types.
func cardFromJSON(data []byte) (*Card, error) {
	doc, err := parseJSON(data, true)
	if err != nil || doc.kind != jsonObject {
		return nil, errors.New("not a card document")
	}
	for key := range doc.members {
		switch key {
		case "number", "exp_month", "exp_year", "holder_name", "cvc":
		default:
			return nil, errors.New("not a card document")
		}
	}
	number, month, year, holder := doc.members["number"], doc.members["exp_month"], doc.members["exp_year"], doc.members["holder_name"]
	if number == nil || month == nil || year == nil || holder == nil ||
		number.kind != jsonString || holder.kind != jsonString ||
		month.kind != jsonInt || !month.intFits || year.kind != jsonInt || !year.intFits {
		return nil, errors.New("not a card document")
	}
	cvc := ""
	if v, ok := doc.members["cvc"]; ok && v.kind != jsonNull {
		if v.kind != jsonString || v.str == "" {
			return nil, errors.New("not a card document")
		}
		cvc = v.str
	}
	if month.integer < 1 || month.integer > 12 || year.integer < 1000 || year.integer > 9999 {
		return nil, errors.New("not a card document")
	}
	return NewCard(number.str, int(month.integer), int(year.integer), cvc, holder.str)
}

// SealCard seals a card for one gateway, bound to one payment (its id is the
// associated data). Useful in a gateway's own tests.
func SealCard(recipient *ecdh.PublicKey, card *Card, paymentID string) (*SealedCard, error) {
	return Seal(recipient, card.SealedJSON(), []byte(paymentID))
}

// OpenCard opens a card sealed to this gateway for paymentID. A tampered, misdirected
// or foreign envelope and a document that is not a card all give the same
// *SealingError (SealingFailed).
func OpenCard(key *ecdh.PrivateKey, sealed *SealedCard, paymentID string) (*Card, error) {
	plaintext, err := Open(key, sealed, []byte(paymentID))
	if err != nil {
		return nil, err
	}
	card, err := cardFromJSON(plaintext)
	if err != nil {
		return nil, sealingErr(SealingFailed)
	}
	return card, nil
}
