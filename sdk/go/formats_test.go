package payrail

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	callbacksv1 "github.com/payrail/payrail/generated/go/payrail/callbacks/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func wantFormatErr(t *testing.T, err error, reason FormatReason, field string) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Reason != reason || fe.Field != field {
		t.Fatalf("error = %v, want %s %q", err, reason, field)
	}
	if !errors.Is(err, ErrFormat) {
		t.Fatal("a FormatError is not errors.Is ErrFormat")
	}
}

func sampleResult() Result {
	return Result{EventID: "evt-1", PaymentID: "p-1", Outcome: Declined, FailureCode: "card_declined",
		FailureMessage: "line one\n\tZürich <&> \"quoted\" \\ 10 €", GatewayReference: "ref-1", OccurTime: 1_700_000_000}
}

const okResult = `{"event_id":"e","failure_code":"","failure_message":"","gateway_reference":"","occur_time":1,"outcome":"APPROVED","payment_id":"p"}`

func TestFormatByName(t *testing.T) {
	for _, name := range []string{"json", "soap", "protobuf"} {
		f, err := FormatByName(name)
		if err != nil || f.Name() != name {
			t.Fatalf("%s: %v", name, err)
		}
	}
	_, err := FormatByName("xml")
	wantFormatErr(t, err, ReasonUnknownFormat, "")
}

func TestResultsRoundTripInEveryFormat(t *testing.T) {
	approved := Result{EventID: "evt-2", PaymentID: "p-2", Outcome: Approved, GatewayReference: "sbx_1", OccurTime: 0}
	for _, f := range []Format{JSON, SOAP, Protobuf} {
		for _, r := range []Result{sampleResult(), approved} {
			data, err := f.EncodeResult(&r)
			if err != nil {
				t.Fatalf("%s encode: %v", f.Name(), err)
			}
			back, err := f.DecodeResult(data)
			if err != nil || *back != r {
				t.Fatalf("%s round trip: %+v, %v", f.Name(), back, err)
			}
		}
		batch := []Result{sampleResult(), approved, sampleResult()}
		data, err := f.EncodeResults(batch)
		if err != nil {
			t.Fatal(err)
		}
		back, err := f.DecodeResults(data)
		if err != nil || len(back) != 3 || back[0] != batch[0] || back[1] != batch[1] {
			t.Fatalf("%s batch round trip: %+v, %v", f.Name(), back, err)
		}
	}
}

func TestRequestsRoundTrip(t *testing.T) {
	key, _ := GenerateKey()
	card, _ := NewCard("4000000000000002", 1, 2031, "", "")
	sealed, err := SealCard(key.PublicKey(), card, "p-9")
	if err != nil {
		t.Fatal(err)
	}
	requests := []Request{
		{RequestID: "r-1", PaymentID: "p-9", Attempt: 3, Kind: KindWithdrawal, AmountMinor: 5,
			CurrencyCode: "CAD", Card: &MaskedCard{"VISA", "400000******0002"}, SealedCard: sealed,
			CallbackDeadline: 1_700_000_030, Description: "tab\there\nand <xml> & \"json\""},
		{RequestID: "r-2", PaymentID: "p-8", Attempt: 1, Kind: KindPurchase, AmountMinor: 1<<63 - 1,
			CurrencyCode: "JPY", Merchant: &Merchant{"m", "Café", "5812", "CH", "Zürich"}, CallbackDeadline: UnixSecondsMax},
	}
	for _, f := range []Format{JSON, SOAP, Protobuf} {
		for _, r := range requests {
			data, err := f.EncodeRequest(&r)
			if err != nil {
				t.Fatal(err)
			}
			back, err := f.DecodeRequest(data)
			if err != nil {
				t.Fatalf("%s: %v", f.Name(), err)
			}
			if back.RequestID != r.RequestID || back.Description != r.Description || back.AmountMinor != r.AmountMinor ||
				(r.Merchant != nil) != (back.Merchant != nil) || (r.SealedCard != nil) != (back.SealedCard != nil) {
				t.Fatalf("%s: %+v", f.Name(), back)
			}
			if r.SealedCard != nil {
				opened, err := OpenCard(key, back.SealedCard, back.PaymentID)
				if err != nil || opened.Number() != "4000000000000002" || opened.CVC() != "" {
					t.Fatalf("%s: sealed card did not survive: %v", f.Name(), err)
				}
			}
		}
	}
}

func TestResultFieldRules(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(*Result)
		reason FormatReason
		field  string
	}{
		{"empty event id", func(r *Result) { r.EventID = "" }, ReasonMissingField, "event_id"},
		{"space in id", func(r *Result) { r.PaymentID = "p 1" }, ReasonInvalidField, "payment_id"},
		{"long id", func(r *Result) { r.EventID = strings.Repeat("e", 129) }, ReasonInvalidField, "event_id"},
		{"outcome", func(r *Result) { r.Outcome = "MAYBE" }, ReasonInvalidField, "outcome"},
		{"failure code shape", func(r *Result) { r.FailureCode = "bad code" }, ReasonInvalidField, "failure_code"},
		{"control character", func(r *Result) { r.FailureMessage = "a\x1bb" }, ReasonInvalidField, "failure_message"},
		{"C1 control", func(r *Result) { r.GatewayReference = "a\u0085" }, ReasonInvalidField, "gateway_reference"},
		{"noncharacter", func(r *Result) { r.FailureMessage = "\uffff" }, ReasonInvalidField, "failure_message"},
		{"newline in reference", func(r *Result) { r.GatewayReference = "a\nb" }, ReasonInvalidField, "gateway_reference"},
		{"message too long", func(r *Result) { r.FailureMessage = strings.Repeat("é", 501) }, ReasonInvalidField, "failure_message"},
		{"negative time", func(r *Result) { r.OccurTime = -1 }, ReasonInvalidField, "occur_time"},
		{"time past 9999", func(r *Result) { r.OccurTime = UnixSecondsMax + 1 }, ReasonInvalidField, "occur_time"},
		{"declined without code", func(r *Result) { r.FailureCode = "" }, ReasonMissingField, "failure_code"},
		{"approved with message", func(r *Result) { r.Outcome = Approved; r.FailureCode = "" }, ReasonInvalidField, "failure_code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := sampleResult()
			c.edit(&r)
			for _, f := range []Format{JSON, SOAP, Protobuf} {
				_, err := f.EncodeResult(&r)
				wantFormatErr(t, err, c.reason, c.field)
			}
		})
	}
	// 500 characters of two bytes each are fine: limits count characters.
	r := sampleResult()
	r.FailureMessage = strings.Repeat("é", 500)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestJSONDecodingIsStrict(t *testing.T) {
	cases := []struct {
		name, doc string
		reason    FormatReason
		field     string
	}{
		{"duplicate key", `{"event_id":"e","event_id":"f","failure_code":"","failure_message":"","gateway_reference":"","occur_time":1,"outcome":"APPROVED","payment_id":"p"}`, ReasonMalformed, ""},
		{"float time", strings.Replace(okResult, `:1,`, `:1.0,`, 1), ReasonInvalidField, "occur_time"},
		{"exponent time", strings.Replace(okResult, `:1,`, `:1e3,`, 1), ReasonInvalidField, "occur_time"},
		{"string time", strings.Replace(okResult, `:1,`, `:"1",`, 1), ReasonInvalidField, "occur_time"},
		{"bool time", strings.Replace(okResult, `:1,`, `:true,`, 1), ReasonInvalidField, "occur_time"},
		{"huge time", strings.Replace(okResult, `:1,`, `:99999999999999999999999,`, 1), ReasonInvalidField, "occur_time"},
		{"NaN", strings.Replace(okResult, `:1,`, `:NaN,`, 1), ReasonMalformed, ""},
		{"leading zero", strings.Replace(okResult, `:1,`, `:01,`, 1), ReasonMalformed, ""},
		{"null reference", strings.Replace(okResult, `"gateway_reference":""`, `"gateway_reference":null`, 1), ReasonInvalidField, "gateway_reference"},
		{"lone surrogate", strings.Replace(okResult, `"gateway_reference":""`, `"gateway_reference":"\ud800"`, 1), ReasonInvalidField, "gateway_reference"},
		{"raw control in string", strings.Replace(okResult, `"gateway_reference":""`, "\"gateway_reference\":\"a\x01\"", 1), ReasonMalformed, ""},
		{"missing outcome", strings.Replace(okResult, `"outcome":"APPROVED",`, ``, 1), ReasonMissingField, "outcome"},
		{"trailing garbage", okResult + "x", ReasonMalformed, ""},
		{"bom", "\ufeff" + okResult, ReasonMalformed, ""},
		{"invalid utf-8", strings.Replace(okResult, `"gateway_reference":""`, "\"gateway_reference\":\"\xff\"", 1), ReasonMalformed, ""},
		{"array", `["e"]`, ReasonMalformed, ""},
		{"deep", strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100), ReasonMalformed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := JSON.DecodeResult([]byte(c.doc))
			wantFormatErr(t, err, c.reason, c.field)
		})
	}
	// Unknown keys are ignored; white space and escapes are JSON's; a surrogate pair
	// is one character.
	doc := strings.Replace(okResult, `"gateway_reference":""`, "\"future\":[1,{}], \"gateway_reference\" : \"\\ud83d\\ude00\\u00e9\\/\"", 1)
	r, err := JSON.DecodeResult([]byte(doc))
	if err != nil || r.GatewayReference != "😀é/" {
		t.Fatalf("%+v, %v", r, err)
	}
	_, err = JSON.DecodeResult(bytes.Repeat([]byte(" "), EncodedMaxBytes+1))
	wantFormatErr(t, err, ReasonOversized, "")
}

func TestJSONRequestRules(t *testing.T) {
	base := `{"amount_minor":1,"attempt":1,"callback_deadline":0,"card":CARD,"currency_code":"CAD","kind":"DEPOSIT","merchant":null,"payment_id":"p","request_id":"r","sealed_card":SEALED}`
	doc := func(card, sealed string) []byte {
		return []byte(strings.NewReplacer("CARD", card, "SEALED", sealed).Replace(base))
	}
	if _, err := JSON.DecodeRequest(doc("null", "null")); err != nil {
		t.Fatal(err)
	}
	_, err := JSON.DecodeRequest(doc(`{"brand":"VISA","masked_number":"4242424242424242"}`, "null"))
	wantFormatErr(t, err, ReasonInvalidField, "card.masked_number")
	_, err = JSON.DecodeRequest(doc(`{"brand":"VISA"}`, "null"))
	wantFormatErr(t, err, ReasonMissingField, "card.masked_number")
	_, err = JSON.DecodeRequest(doc(`"VISA"`, "null"))
	wantFormatErr(t, err, ReasonInvalidField, "card")
	_, err = JSON.DecodeRequest(doc("null", `"AAAA"`))
	wantFormatErr(t, err, ReasonInvalidField, "sealed_card")
	_, err = JSON.DecodeRequest(doc("null", `7`))
	wantFormatErr(t, err, ReasonInvalidField, "sealed_card")
	_, err = JSON.DecodeRequest([]byte(strings.Replace(string(doc("null", "null")), `"kind":"DEPOSIT"`, `"kind":"REFUND"`, 1)))
	wantFormatErr(t, err, ReasonInvalidField, "kind")
	_, err = JSON.DecodeRequest([]byte(strings.Replace(string(doc("null", "null")), `"amount_minor":1`, `"amount_minor":0`, 1)))
	wantFormatErr(t, err, ReasonInvalidField, "amount_minor")
	_, err = JSON.DecodeRequest([]byte(strings.Replace(string(doc("null", "null")), `"currency_code":"CAD"`, `"currency_code":"cad"`, 1)))
	wantFormatErr(t, err, ReasonInvalidField, "currency_code")
}

func TestBatchLimits(t *testing.T) {
	for _, f := range []Format{JSON, SOAP, Protobuf} {
		_, err := f.EncodeResults(nil)
		wantFormatErr(t, err, ReasonInvalidField, "results")
		many := make([]Result, BatchResultsMax+1)
		for i := range many {
			many[i] = sampleResult()
		}
		_, err = f.EncodeResults(many)
		wantFormatErr(t, err, ReasonInvalidField, "results")
		// 500 results with every text field at its longest do not fit 1 MiB.
		big := sampleResult()
		big.FailureMessage = strings.Repeat("😀", FailureMessageMaxChars)
		big.GatewayReference = strings.Repeat("😀", GatewayReferenceMaxChars)
		full := make([]Result, BatchResultsMax)
		for i := range full {
			full[i] = big
		}
		_, err = f.EncodeResults(full)
		wantFormatErr(t, err, ReasonOversized, "")
	}
	_, err := JSON.DecodeResults([]byte(`{"results":[]}`))
	wantFormatErr(t, err, ReasonInvalidField, "results")
	_, err = JSON.DecodeResults([]byte(`{"results":{}}`))
	wantFormatErr(t, err, ReasonInvalidField, "results")
	_, err = JSON.DecodeResults([]byte(`{"results":[1]}`))
	wantFormatErr(t, err, ReasonInvalidField, "results")
	_, err = JSON.DecodeResults([]byte(`{}`))
	wantFormatErr(t, err, ReasonMissingField, "results")
}

func soapResult(body string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pr="urn:payrail:gateway:v1"><soap:Body>` +
		body + `</soap:Body></soap:Envelope>`)
}

const soapFieldsOK = `<pr:event_id>e</pr:event_id><pr:payment_id>p</pr:payment_id><pr:outcome>APPROVED</pr:outcome><pr:occur_time>5</pr:occur_time>`

func TestSOAPDecodingRules(t *testing.T) {
	r, err := SOAP.DecodeResult(soapResult(`<pr:GatewayResult>` + soapFieldsOK + `<x:ext xmlns:x="urn:other">ignored</x:ext><!-- a comment --></pr:GatewayResult>`))
	if err != nil || r.OccurTime != 5 || r.FailureCode != "" {
		t.Fatalf("%+v, %v", r, err)
	}
	cases := []struct {
		name   string
		doc    []byte
		reason FormatReason
		field  string
	}{
		{"doctype", []byte(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>` + string(soapResult(`<pr:GatewayResult>` + soapFieldsOK + `</pr:GatewayResult>`))[len(`<?xml version="1.0" encoding="UTF-8"?>`):]), ReasonForbiddenMarkup, ""},
		{"processing instruction", soapResult(`<?php echo 1; ?><pr:GatewayResult>` + soapFieldsOK + `</pr:GatewayResult>`), ReasonForbiddenMarkup, ""},
		{"undefined entity", soapResult(`<pr:GatewayResult>` + strings.Replace(soapFieldsOK, ">e<", ">&e;<", 1) + `</pr:GatewayResult>`), ReasonMalformed, ""},
		{"unbound prefix", soapResult(`<pr:GatewayResult><zz:event_id>e</zz:event_id></pr:GatewayResult>`), ReasonMalformed, ""},
		{"latin-1 declared", []byte(strings.Replace(string(soapResult(`<pr:GatewayResult>`+soapFieldsOK+`</pr:GatewayResult>`)), "UTF-8", "ISO-8859-1", 1)), ReasonMalformed, ""},
		{"duplicate field", soapResult(`<pr:GatewayResult>` + soapFieldsOK + `<pr:event_id>f</pr:event_id></pr:GatewayResult>`), ReasonMalformed, "event_id"},
		{"nested field", soapResult(`<pr:GatewayResult>` + strings.Replace(soapFieldsOK, ">e<", "><pr:x/><", 1) + `</pr:GatewayResult>`), ReasonInvalidField, "event_id"},
		{"signed integer", soapResult(`<pr:GatewayResult>` + strings.Replace(soapFieldsOK, ">5<", ">+5<", 1) + `</pr:GatewayResult>`), ReasonInvalidField, "occur_time"},
		{"leading zero", soapResult(`<pr:GatewayResult>` + strings.Replace(soapFieldsOK, ">5<", ">05<", 1) + `</pr:GatewayResult>`), ReasonInvalidField, "occur_time"},
		{"another message", soapResult(`<pr:GatewayRequest/>`), ReasonMalformed, "GatewayResult"},
		{"fault", soapResult(`<soap:Fault/>`), ReasonMalformed, "GatewayResult"},
		{"not soap", []byte(`<a/>`), ReasonMalformed, "Envelope"},
		{"must understand", []byte(strings.Replace(string(soapResult(`<pr:GatewayResult>`+soapFieldsOK+`</pr:GatewayResult>`)), "<soap:Body>", `<soap:Header><h soap:mustUnderstand="1"/></soap:Header><soap:Body>`, 1)), ReasonMalformed, "Header"},
		{"two roots", append(soapResult(`<pr:GatewayResult>`+soapFieldsOK+`</pr:GatewayResult>`), []byte("<b/>")...), ReasonMalformed, ""},
		{"unclosed", soapResult(`<pr:GatewayResult>` + soapFieldsOK), ReasonMalformed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := SOAP.DecodeResult(c.doc)
			wantFormatErr(t, err, c.reason, c.field)
		})
	}
	// A header without mustUnderstand is fine.
	ok := strings.Replace(string(soapResult(`<pr:GatewayResult>`+soapFieldsOK+`</pr:GatewayResult>`)), "<soap:Body>", `<soap:Header><h/></soap:Header><soap:Body>`, 1)
	if _, err := SOAP.DecodeResult([]byte(ok)); err != nil {
		t.Fatal(err)
	}
	// In a batch, other namespaces are skipped and any other payrail element refused.
	batch := `<pr:GatewayResultBatch><pr:GatewayResult>` + soapFieldsOK + `</pr:GatewayResult><x:y xmlns:x="urn:x"/></pr:GatewayResultBatch>`
	if rs, err := SOAP.DecodeResults(soapResult(batch)); err != nil || len(rs) != 1 {
		t.Fatalf("%v, %v", rs, err)
	}
	_, err = SOAP.DecodeResults(soapResult(`<pr:GatewayResultBatch><pr:Other/></pr:GatewayResultBatch>`))
	wantFormatErr(t, err, ReasonMalformed, "results")
}

func TestProtobufDecodingRules(t *testing.T) {
	encode := func(m *callbacksv1.GatewayResult) []byte {
		b, _ := proto.Marshal(m)
		return b
	}
	good := func() *callbacksv1.GatewayResult {
		return &callbacksv1.GatewayResult{EventId: "e", PaymentId: "p", Outcome: callbacksv1.Outcome_OUTCOME_APPROVED, OccurTime: &timestamppb.Timestamp{Seconds: 9, Nanos: 5}}
	}
	r, err := Protobuf.DecodeResult(encode(good()))
	if err != nil || r.OccurTime != 9 {
		t.Fatalf("%+v, %v", r, err)
	}
	m := good()
	m.Outcome = callbacksv1.Outcome_OUTCOME_UNSPECIFIED
	_, err = Protobuf.DecodeResult(encode(m))
	wantFormatErr(t, err, ReasonInvalidField, "outcome")
	m = good()
	m.OccurTime = nil
	_, err = Protobuf.DecodeResult(encode(m))
	wantFormatErr(t, err, ReasonMissingField, "occur_time")
	m = good()
	m.OccurTime.Nanos = -1
	_, err = Protobuf.DecodeResult(encode(m))
	wantFormatErr(t, err, ReasonInvalidField, "occur_time")
	// A string field that is not UTF-8 is not a valid message.
	raw := encode(good())
	bad := append([]byte{0x0a, 0x01, 0xff}, raw[3:]...)
	_, err = Protobuf.DecodeResult(bad)
	wantFormatErr(t, err, ReasonMalformed, "")
	_, err = Protobuf.DecodeResults(nil)
	wantFormatErr(t, err, ReasonInvalidField, "results")
	// Requests of a protobuf gateway are JSON.
	if _, err := Protobuf.DecodeRequest([]byte(`{"amount_minor":1,"attempt":1,"callback_deadline":0,"currency_code":"CAD","kind":"DEPOSIT","payment_id":"p","request_id":"r"}`)); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecoders: no input makes a decoder panic, and whatever decodes re-encodes to
// something that decodes to the same message.
func FuzzDecoders(f *testing.F) {
	f.Add([]byte(okResult), uint8(0))
	f.Add(soapResult(`<pr:GatewayResult>`+soapFieldsOK+`</pr:GatewayResult>`), uint8(1))
	pb, _ := Protobuf.EncodeResult(&Result{EventID: "e", PaymentID: "p", Outcome: Approved, OccurTime: 1})
	f.Add(pb, uint8(2))
	f.Add([]byte(`{"results":[`+okResult+`]}`), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		formats := []Format{JSON, SOAP, Protobuf}
		wire := formats[int(which)%3]
		if r, err := wire.DecodeResult(data); err == nil {
			again, err := wire.EncodeResult(r)
			if err != nil {
				t.Fatalf("decoded but not encodable: %v", err)
			}
			if back, err := wire.DecodeResult(again); err != nil || *back != *r {
				t.Fatalf("re-encoding changed the result: %v", err)
			}
		} else if !errors.Is(err, ErrFormat) {
			t.Fatalf("an error that is not a FormatError: %v", err)
		}
		if rs, err := wire.DecodeResults(data); err == nil && (len(rs) < 1 || len(rs) > BatchResultsMax) {
			t.Fatal("a batch outside its bounds decoded")
		}
		if _, err := wire.DecodeRequest(data); err != nil && !errors.Is(err, ErrFormat) {
			t.Fatalf("an error that is not a FormatError: %v", err)
		}
	})
}
