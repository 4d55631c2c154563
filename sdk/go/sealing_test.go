package payrail

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func wantSealingErr(t *testing.T, err error, reason SealingReason) {
	t.Helper()
	var se *SealingError
	if !errors.As(err, &se) || se.Reason != reason || !errors.Is(err, ErrSealing) {
		t.Fatalf("error = %v, want %s", err, reason)
	}
}

func TestSealAndOpen(t *testing.T) {
	key, _ := GenerateKey()
	other, _ := GenerateKey()
	plaintext := []byte(`{"number":"4242424242424242"}`)
	sealed, err := Seal(key.PublicKey(), plaintext, []byte("p-1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(key, sealed, []byte("p-1")); err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Fresh randomness per message.
	again, _ := Seal(key.PublicKey(), plaintext, []byte("p-1"))
	if bytes.Equal(again.Bytes(), sealed.Bytes()) {
		t.Fatal("two seals of the same card are equal")
	}
	_, err = Open(other, sealed, []byte("p-1"))
	wantSealingErr(t, err, SealingFailed)
	_, err = Open(key, sealed, []byte("p-2"))
	wantSealingErr(t, err, SealingFailed)
	// A flipped bit anywhere after the version byte fails as one error.
	envelope := sealed.Bytes()
	for i := 1; i < len(envelope); i++ {
		tampered := append([]byte(nil), envelope...)
		tampered[i] ^= 0x01
		parsed, err := ParseSealedCard(tampered)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(key, parsed, []byte("p-1")); !errors.Is(err, ErrSealing) {
			t.Fatalf("bit flip at %d opened", i)
		}
	}
	// A low-order ephemeral key (all zero) gives an all-zero secret: refused.
	zero := append([]byte{1}, make([]byte, len(envelope)-1)...)
	parsed, _ := ParseSealedCard(zero)
	_, err = Open(key, parsed, []byte("p-1"))
	wantSealingErr(t, err, SealingFailed)
}

func TestEnvelopeShape(t *testing.T) {
	_, err := ParseSealedCard(make([]byte, EnvelopeMinBytes-1))
	wantSealingErr(t, err, SealingMalformed)
	_, err = ParseSealedCard(make([]byte, EnvelopeMaxBytes+1))
	wantSealingErr(t, err, SealingMalformed)
	_, err = ParseSealedCard(append([]byte{2}, make([]byte, EnvelopeMinBytes)...))
	wantSealingErr(t, err, SealingUnsupportedVersion)
	key, _ := GenerateKey()
	sealed, _ := Seal(key.PublicKey(), []byte("x"), []byte("p"))
	text := sealed.Base64()
	for _, bad := range []string{text[:40] + "\n" + text[40:], strings.TrimRight(text, "="), text + "====", " " + text, strings.Repeat("A", base64MaxChars+4)} {
		_, err := ParseSealedCardBase64(bad)
		wantSealingErr(t, err, SealingMalformed)
	}
	if _, err := ParseSealedCardBase64(text); err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(key.PublicKey(), make([]byte, PlaintextMaxBytes+1), []byte("p")); err == nil {
		t.Fatal("an oversized plaintext was sealed")
	}
	if _, err := Seal(key.PublicKey(), []byte("x"), nil); err == nil {
		t.Fatal("sealed without associated data")
	}
}

func TestKeys(t *testing.T) {
	key, _ := GenerateKey()
	raw, err := LoadPrivateKey(key.Bytes())
	if err != nil || !raw.Equal(key) {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	fromPEM, err := LoadPrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil || !fromPEM.Equal(key) {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.PublicKey())
	pub, err := LoadPublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
	if err != nil || !pub.Equal(key.PublicKey()) {
		t.Fatal(err)
	}
	_, err = LoadPrivateKey(make([]byte, 31))
	wantSealingErr(t, err, SealingInvalidKey)
	_, err = LoadPublicKey([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	wantSealingErr(t, err, SealingInvalidKey)
}

func TestCardDocuments(t *testing.T) {
	key, _ := GenerateKey()
	open := func(doc string) (*Card, error) {
		sealed, err := Seal(key.PublicKey(), []byte(doc), []byte("p"))
		if err != nil {
			t.Fatal(err)
		}
		return OpenCard(key, sealed, "p")
	}
	card, err := open(`{"number":"4242424242424242","exp_month":12,"exp_year":2030,"holder_name":"Jane","cvc":"123"}`)
	if err != nil || card.Number() != "4242424242424242" || card.CVC() != "123" || card.HolderName() != "Jane" {
		t.Fatalf("%v", err)
	}
	if card, err := open(`{"number":"4242424242424242","exp_month":1,"exp_year":2030,"holder_name":""}`); err != nil || card.CVC() != "" {
		t.Fatalf("a card without cvc: %v", err)
	}
	for _, doc := range []string{
		`{"number":"4242","exp_month":12,"exp_year":2030,"holder_name":""}`,
		`{"number":"4242424242424242","exp_month":13,"exp_year":2030,"holder_name":""}`,
		`{"number":"4242424242424242","exp_month":12.0,"exp_year":2030,"holder_name":""}`,
		`{"number":"4242424242424242","exp_month":12,"exp_year":2030}`,
		`{"number":"4242424242424242","exp_month":12,"exp_year":2030,"holder_name":"","extra":1}`,
		`{"number":"4242424242424242","exp_month":12,"exp_year":2030,"holder_name":"","cvc":"12"}`,
		`[]`,
	} {
		_, err := open(doc)
		wantSealingErr(t, err, SealingFailed)
	}
}

func TestCardNeverShowsItsNumber(t *testing.T) {
	card, err := NewCard("4242424242424242", 12, 2030, "123", "Jane Müller")
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "card", card)
	marshalled, _ := json.Marshal(card)
	outputs := []string{
		fmt.Sprint(card), fmt.Sprintf("%v %+v %#v %s", card, card, card, card), card.String(),
		logged.String(), string(marshalled), fmt.Sprint(*card),
	}
	for _, out := range outputs {
		if strings.Contains(out, "4242424242424242") || strings.Contains(out, "123,") || strings.Contains(out, "Müller") {
			t.Fatalf("card data shown: %s", out)
		}
	}
	if !strings.Contains(outputs[0], "424242******4242") {
		t.Fatalf("masked number missing: %s", outputs[0])
	}
	if _, err := NewCard("4242 4242", 1, 2030, "", ""); err == nil || strings.Contains(err.Error(), "4242") {
		t.Fatalf("error = %v", err)
	}
}
