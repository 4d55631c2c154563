package payrail

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// The callback signature (docs/callbacks.md, "Signing"):
//
//	x-payrail-signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]
//	v1 = lowercase_hex(HMAC-SHA256(key=secret, message=ASCII(t) || "." || payload))

// Signing limits and names.
const (
	// SignatureHeader is the gRPC metadata key of the signature.
	SignatureHeader = "x-payrail-signature"
	// ToleranceSeconds is how far a signed timestamp may be from the verifier's clock,
	// in both directions.
	ToleranceSeconds = 300
	// HeaderMaxChars bounds a header; one with the most v1 entries is about 600.
	HeaderMaxChars = 1024
	// SignaturesMax bounds the v1 entries of a header (each costs an HMAC per secret).
	SignaturesMax = 8
	// ElementsMax bounds the elements of any scheme in one header.
	ElementsMax = 16
	// SecretsMax bounds the secrets one signs or verifies with; rotation needs two.
	SecretsMax = 8
	// SecretMinBytes is the shortest callback secret payrail's registry accepts.
	SecretMinBytes = 32
	// TimestampMaxDigits bounds the parse of t (10 digits last until 2286).
	TimestampMaxDigits = 12
)

// SignatureReason says why a signature was not accepted; the values are stable.
type SignatureReason string

// Reasons of a SignatureError.
const (
	SignatureMissing   SignatureReason = "missing"      // the header is empty or absent
	SignatureMalformed SignatureReason = "malformed"    // breaks the grammar or a limit
	SignatureNone      SignatureReason = "no_signature" // well formed, without any v1
	SignatureStale     SignatureReason = "stale"        // t is more than the tolerance from now
	SignatureMismatch  SignatureReason = "mismatch"     // no v1 matches any secret
	SignatureNoSecret  SignatureReason = "no_secret"    // no secret to verify with
)

// ErrSignature matches every *SignatureError with errors.Is.
var ErrSignature = errors.New("payrail: callback signature not accepted")

// SignatureError is a signature that was not accepted. Its message never contains the
// header, the payload or a secret.
type SignatureError struct{ Reason SignatureReason }

func (e *SignatureError) Error() string {
	return "payrail: callback signature not accepted: " + string(e.Reason)
}

// Is makes errors.Is(err, ErrSignature) true for every SignatureError.
func (e *SignatureError) Is(target error) bool { return target == ErrSignature }

func signatureErr(reason SignatureReason) error { return &SignatureError{Reason: reason} }

// Secret is a gateway's callback secret: the raw HMAC key (at least SecretMinBytes).
// String, GoString and LogValue are redacted.
type Secret struct{ key []byte }

// NewSecret wraps the raw bytes of a callback secret.
func NewSecret(key []byte) (Secret, error) {
	if len(key) < SecretMinBytes {
		return Secret{}, fmt.Errorf("payrail: a callback secret has at least %d bytes", SecretMinBytes)
	}
	return Secret{key: append([]byte(nil), key...)}, nil
}

// ParseSecretBase64 reads the registry's secret files: standard base64, surrounding
// white space ignored.
func ParseSecretBase64(text string) (Secret, error) {
	text = strings.TrimSpace(text)
	if !allBytes(strings.TrimRight(text, "="), isBase64Char) {
		return Secret{}, errors.New("payrail: a callback secret file holds standard base64")
	}
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return Secret{}, errors.New("payrail: a callback secret file holds standard base64")
	}
	return NewSecret(raw)
}

// GenerateSecret returns a fresh random secret of SecretMinBytes.
func GenerateSecret() (Secret, error) {
	key := make([]byte, SecretMinBytes)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, err
	}
	return Secret{key: key}, nil
}

// Base64 is the secret in the registry's file form.
func (s Secret) Base64() string { return base64.StdEncoding.EncodeToString(s.key) }

func (s Secret) String() string       { return "<redacted>" }
func (s Secret) GoString() string     { return "<redacted>" }
func (s Secret) LogValue() slog.Value { return slog.StringValue("<redacted>") }

// ComputeSignature is the raw 32-byte HMAC-SHA256 of ASCII(timestamp) "." payload.
func ComputeSignature(payload []byte, secret Secret, timestamp int64) []byte {
	mac := hmac.New(sha256.New, secret.key)
	mac.Write(strconv.AppendInt(nil, timestamp, 10))
	mac.Write([]byte{'.'})
	mac.Write(payload)
	return mac.Sum(nil)
}

// Sign returns the header value with one v1 per secret, in order: while a secret
// rotates, a gateway signs with the old and the new one. timestamp is unix seconds.
func Sign(payload []byte, secrets []Secret, timestamp int64) (string, error) {
	if len(secrets) < 1 || len(secrets) > SignaturesMax {
		return "", fmt.Errorf("payrail: sign with 1 to %d secrets", SignaturesMax)
	}
	if timestamp < 0 || timestamp >= 1_000_000_000_000 {
		return "", fmt.Errorf("payrail: timestamp is 0 to %d decimal digits", TimestampMaxDigits)
	}
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(timestamp, 10))
	for _, s := range secrets {
		if len(s.key) == 0 {
			return "", errors.New("payrail: an empty callback secret")
		}
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(ComputeSignature(payload, s, timestamp)))
	}
	return b.String(), nil
}

// ParsedSignature is a well-formed header: the timestamp and the v1 digests (1 to
// SignaturesMax, in header order, duplicates kept).
type ParsedSignature struct {
	Timestamp  int64
	Signatures [][]byte
}

func isKeyChar(c byte) bool   { return c >= 'a' && c <= 'z' || isDigit(c) }
func isValueChar(c byte) bool { return c >= 0x21 && c <= 0x7e && c != ',' }
func isHexChar(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// ParseSignatureHeader applies the strict, bounded grammar of docs/callbacks.md.
func ParseSignatureHeader(header string) (*ParsedSignature, error) {
	if header == "" {
		return nil, signatureErr(SignatureMissing)
	}
	// Visible ASCII only (values) plus separators: anything else is malformed.
	if len(header) > HeaderMaxChars || !allBytes(header, func(c byte) bool { return c < 0x80 }) {
		return nil, signatureErr(SignatureMalformed)
	}
	elements := strings.Split(header, ",")
	if len(elements) > ElementsMax {
		return nil, signatureErr(SignatureMalformed)
	}
	parsed := &ParsedSignature{Timestamp: -1}
	for _, element := range elements {
		key, value, found := strings.Cut(element, "=")
		if !found || key == "" || len(key) > 16 || !allBytes(key, isKeyChar) ||
			value == "" || !allBytes(value, isValueChar) {
			return nil, signatureErr(SignatureMalformed)
		}
		switch key {
		case "t":
			if parsed.Timestamp >= 0 || len(value) > TimestampMaxDigits || !allBytes(value, isDigit) ||
				len(value) > 1 && value[0] == '0' {
				return nil, signatureErr(SignatureMalformed)
			}
			parsed.Timestamp, _ = strconv.ParseInt(value, 10, 64)
		case "v1":
			if len(value) != 2*sha256.Size || !allBytes(value, isHexChar) {
				return nil, signatureErr(SignatureMalformed)
			}
			digest, _ := hex.DecodeString(value)
			parsed.Signatures = append(parsed.Signatures, digest)
			if len(parsed.Signatures) > SignaturesMax {
				return nil, signatureErr(SignatureMalformed)
			}
		}
		// Other schemes (a future v2, say) are skipped so they can be rolled out.
	}
	if parsed.Timestamp < 0 {
		return nil, signatureErr(SignatureMalformed)
	}
	if len(parsed.Signatures) == 0 {
		return nil, signatureErr(SignatureNone)
	}
	return parsed, nil
}

// Verify returns nil when header carries a valid signature of payload by one of
// secrets, made within ToleranceSeconds of now (unix seconds); a *SignatureError
// otherwise. Every v1 is compared with every expected digest in constant time, with no
// early exit.
func Verify(payload []byte, header string, secrets []Secret, now int64) error {
	parsed, err := ParseSignatureHeader(header)
	if err != nil {
		return err
	}
	if d := now - parsed.Timestamp; d > ToleranceSeconds || d < -ToleranceSeconds {
		return signatureErr(SignatureStale)
	}
	if len(secrets) == 0 {
		return signatureErr(SignatureNoSecret)
	}
	if len(secrets) > SecretsMax {
		return fmt.Errorf("payrail: at most %d active secrets per gateway", SecretsMax)
	}
	matched := 0
	for _, s := range secrets {
		expected := ComputeSignature(payload, s, parsed.Timestamp)
		for _, candidate := range parsed.Signatures {
			matched |= subtle.ConstantTimeCompare(candidate, expected)
		}
	}
	if matched == 0 {
		return signatureErr(SignatureMismatch)
	}
	return nil
}
