package payrail

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func testSecret(t *testing.T, fill byte) Secret {
	t.Helper()
	s, err := NewSecret(bytes.Repeat([]byte{fill}, SecretMinBytes))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantSignatureErr(t *testing.T, err error, reason SignatureReason) {
	t.Helper()
	var se *SignatureError
	if !errors.As(err, &se) || se.Reason != reason || !errors.Is(err, ErrSignature) {
		t.Fatalf("error = %v, want %s", err, reason)
	}
}

func TestHeaderGrammar(t *testing.T) {
	secret := testSecret(t, 7)
	payload := []byte("payload")
	header, _ := Sign(payload, []Secret{secret}, 1000)
	v1 := strings.TrimPrefix(header, "t=1000,")
	cases := map[string]SignatureReason{
		"":                         SignatureMissing,
		"t=1000":                   SignatureNone,
		v1:                         SignatureMalformed, // no t
		"t=1000, " + v1:            SignatureMalformed,
		"t=1000,," + v1:            SignatureMalformed,
		"t=1000," + v1 + ",":       SignatureMalformed,
		"t=01000," + v1:            SignatureMalformed,
		"t=1000,t=1000," + v1:      SignatureMalformed,
		"t=-1000," + v1:            SignatureMalformed,
		"t=1000000000000," + v1:    SignatureMalformed, // 13 digits
		"t=1000," + v1[:len(v1)-1]: SignatureMalformed,
		"t=1000,V1=" + v1[3:]:      SignatureMalformed,
		"t=1000," + v1 + ",x=é":    SignatureMalformed,
		"t=1000," + strings.Repeat(v1+",", 9) + "x=1": SignatureMalformed, // 9 v1
		"t=1000," + strings.Repeat("x=1,", 16) + v1:   SignatureMalformed, // 18 elements
		"t=1000,verylongschemename17=1," + v1:         SignatureMalformed,
	}
	for h, reason := range cases {
		err := Verify(payload, h, []Secret{secret}, 1000)
		wantSignatureErr(t, err, reason)
	}
	// Accepted: upper-case hex, an unknown scheme, any order, a repeated v1, 8 v1s.
	for _, h := range []string{
		"t=1000,v1=" + strings.ToUpper(v1[3:]),
		"t=1000,v2=anything," + v1,
		v1 + ",t=1000",
		"t=1000," + v1 + "," + v1,
		"t=1000," + strings.TrimSuffix(strings.Repeat(v1+",", 8), ","),
	} {
		if err := Verify(payload, h, []Secret{secret}, 1000); err != nil {
			t.Fatalf("%s: %v", h, err)
		}
	}
	if err := Verify(payload, header+strings.Repeat(",x=1", 200), []Secret{secret}, 1000); err == nil {
		t.Fatal("a header over the length bound was accepted")
	}
}

func TestVerifyWindowAndSecrets(t *testing.T) {
	a, b := testSecret(t, 1), testSecret(t, 2)
	payload := []byte(`{"x":1}`)
	header, _ := Sign(payload, []Secret{a, b}, 5000)
	for _, now := range []int64{4700, 5300} {
		if err := Verify(payload, header, []Secret{b}, now); err != nil {
			t.Fatalf("now %d: %v", now, err)
		}
	}
	for _, now := range []int64{4699, 5301} {
		wantSignatureErr(t, Verify(payload, header, []Secret{a}, now), SignatureStale)
	}
	wantSignatureErr(t, Verify(payload, header, nil, 5000), SignatureNoSecret)
	wantSignatureErr(t, Verify([]byte(`{"x":2}`), header, []Secret{a}, 5000), SignatureMismatch)
	wantSignatureErr(t, Verify(payload, header, []Secret{testSecret(t, 3)}, 5000), SignatureMismatch)
	if _, err := Sign(payload, nil, 1); err == nil {
		t.Fatal("signed without a secret")
	}
	if _, err := Sign(payload, []Secret{a}, -1); err == nil {
		t.Fatal("signed a negative timestamp")
	}
	if _, err := NewSecret(make([]byte, SecretMinBytes-1)); err == nil {
		t.Fatal("a short secret")
	}
}

func TestSecretIsRedacted(t *testing.T) {
	s, err := ParseSecretBase64(" cGF5cmFpbCB0ZXN0IHZlY3RvciBzZWNyZXQgbm8uIDE= \n")
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "secret", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v %#v", s, s), logged.String()} {
		if strings.Contains(out, "payrail") || strings.Contains(out, "cGF5") {
			t.Fatalf("secret shown: %s", out)
		}
	}
	if _, err := ParseSecretBase64("not base64!"); err == nil {
		t.Fatal("accepted")
	}
}
