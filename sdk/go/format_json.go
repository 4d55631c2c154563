package payrail

// The json wire format: UTF-8 JSON objects, sorted keys, no insignificant white space.
// A request:
//
//	{"amount_minor":1000,"attempt":1,"callback_deadline":1700000030,
//	 "card":{"brand":"VISA","masked_number":"424242******4242"},"currency_code":"USD",
//	 "description":"","kind":"DEPOSIT","merchant":null,"payment_id":"...",
//	 "request_id":"...","sealed_card":"<base64 envelope>"}
//
// card, sealed_card and merchant are null (or absent) when there is none. A result:
//
//	{"event_id":"...","failure_code":"","failure_message":"","gateway_reference":"...",
//	 "occur_time":1700000000,"outcome":"APPROVED","payment_id":"..."}
//
// failure_code, failure_message and gateway_reference may be absent (empty). A batch is
// {"results":[{...},{...}]}. Decoding is strict: integers are JSON integers, strings
// are strings, a key appears at most once; unknown keys are ignored.

type jsonFormat struct{}

func (jsonFormat) Name() string        { return "json" }
func (jsonFormat) ContentType() string { return "application/json" }

func loadsObject(data []byte, maxBytes int) (*jsonValue, error) {
	if err := checkSize(data, maxBytes); err != nil {
		return nil, err
	}
	doc, err := parseJSON(data, false)
	if err != nil || doc.kind != jsonObject {
		// The offending key or value is input: never named.
		return nil, formatErr(ReasonMalformed, "")
	}
	return doc, nil
}

// jsonFields reads typed fields out of one object, remembering ill-typed ones so the
// validation reports them in the contract's order.
type jsonFields struct {
	doc    *jsonValue
	prefix string
	bad    badTypes
}

// required: the member, or missing_field.
func (f *jsonFields) required(key string) (*jsonValue, error) {
	v, ok := f.doc.members[key]
	if !ok {
		return nil, formatErr(ReasonMissingField, f.prefix+key)
	}
	return v, nil
}

func (f *jsonFields) text(v *jsonValue, key string) string {
	if v == nil {
		return ""
	}
	if v.kind != jsonString {
		f.bad[f.prefix+key] = true
		return ""
	}
	return v.str
}

func (f *jsonFields) integer(v *jsonValue, key string) int64 {
	if v.kind != jsonInt || !v.intFits {
		f.bad[f.prefix+key] = true
		return 0
	}
	return v.integer
}

// optionalObject: nil for absent or null, invalid_field for anything but an object.
func optionalObject(doc *jsonValue, key string) (*jsonValue, error) {
	v, ok := doc.members[key]
	if !ok || v.kind == jsonNull {
		return nil, nil
	}
	if v.kind != jsonObject {
		return nil, formatErr(ReasonInvalidField, key)
	}
	return v, nil
}

var merchantKeys = [5]string{"merchant_id", "name", "category_code", "country_code", "city"}

func (jsonFormat) DecodeRequest(data []byte) (*Request, error) {
	doc, err := loadsObject(data, EncodedMaxBytes)
	if err != nil {
		return nil, err
	}
	bad := badTypes{}
	r := &Request{}
	cardDoc, err := optionalObject(doc, "card")
	if err != nil {
		return nil, err
	}
	if cardDoc != nil {
		f := &jsonFields{doc: cardDoc, prefix: "card.", bad: bad}
		brand, err := f.required("brand")
		if err != nil {
			return nil, err
		}
		masked, err := f.required("masked_number")
		if err != nil {
			return nil, err
		}
		r.Card = &MaskedCard{Brand: f.text(brand, "brand"), MaskedNumber: f.text(masked, "masked_number")}
		if err := r.Card.validate(bad); err != nil {
			return nil, err
		}
	}
	merchantDoc, err := optionalObject(doc, "merchant")
	if err != nil {
		return nil, err
	}
	if merchantDoc != nil {
		f := &jsonFields{doc: merchantDoc, prefix: "merchant.", bad: bad}
		var values [5]string
		for i, key := range merchantKeys {
			v, err := f.required(key)
			if err != nil {
				return nil, err
			}
			values[i] = f.text(v, key)
		}
		r.Merchant = &Merchant{values[0], values[1], values[2], values[3], values[4]}
		if err := r.Merchant.validate(bad); err != nil {
			return nil, err
		}
	}
	if sealed, ok := doc.members["sealed_card"]; ok && sealed.kind != jsonNull {
		if sealed.kind != jsonString {
			return nil, formatErr(ReasonInvalidField, "sealed_card")
		}
		card, err := ParseSealedCardBase64(sealed.str)
		if err != nil {
			return nil, formatErr(ReasonInvalidField, "sealed_card")
		}
		r.SealedCard = card
	}
	f := &jsonFields{doc: doc, bad: bad}
	var values [7]*jsonValue
	for i, key := range [7]string{"request_id", "payment_id", "attempt", "kind", "amount_minor", "currency_code", "callback_deadline"} {
		if values[i], err = f.required(key); err != nil {
			return nil, err
		}
	}
	r.RequestID = f.text(values[0], "request_id")
	r.PaymentID = f.text(values[1], "payment_id")
	r.Attempt = f.integer(values[2], "attempt")
	r.Kind = f.text(values[3], "kind")
	r.AmountMinor = f.integer(values[4], "amount_minor")
	r.CurrencyCode = f.text(values[5], "currency_code")
	r.CallbackDeadline = f.integer(values[6], "callback_deadline")
	r.Description = f.text(doc.members["description"], "description")
	if err := r.validate(bad); err != nil {
		return nil, err
	}
	return r, nil
}

func resultFromJSON(doc *jsonValue) (*Result, error) {
	bad := badTypes{}
	f := &jsonFields{doc: doc, bad: bad}
	var values [4]*jsonValue
	var err error
	for i, key := range [4]string{"event_id", "payment_id", "outcome", "occur_time"} {
		if values[i], err = f.required(key); err != nil {
			return nil, err
		}
	}
	r := &Result{
		EventID:          f.text(values[0], "event_id"),
		PaymentID:        f.text(values[1], "payment_id"),
		Outcome:          OutcomeKind(f.text(values[2], "outcome")),
		FailureCode:      f.text(doc.members["failure_code"], "failure_code"),
		FailureMessage:   f.text(doc.members["failure_message"], "failure_message"),
		GatewayReference: f.text(doc.members["gateway_reference"], "gateway_reference"),
		OccurTime:        f.integer(values[3], "occur_time"),
	}
	if err := r.validate(bad); err != nil {
		return nil, err
	}
	return r, nil
}

func (jsonFormat) DecodeResult(data []byte) (*Result, error) {
	doc, err := loadsObject(data, EncodedMaxBytes)
	if err != nil {
		return nil, err
	}
	return resultFromJSON(doc)
}

func (jsonFormat) DecodeResults(data []byte) ([]Result, error) {
	doc, err := loadsObject(data, BatchEncodedMaxBytes)
	if err != nil {
		return nil, err
	}
	items, ok := doc.members["results"]
	if !ok {
		return nil, formatErr(ReasonMissingField, "results")
	}
	if items.kind != jsonArray {
		return nil, formatErr(ReasonInvalidField, "results")
	}
	results := make([]Result, 0, len(items.items))
	for _, item := range items.items {
		if item.kind != jsonObject {
			return nil, formatErr(ReasonInvalidField, "results")
		}
		r, err := resultFromJSON(item)
		if err != nil {
			return nil, err
		}
		results = append(results, *r)
	}
	if err := checkBatch(results); err != nil {
		return nil, err
	}
	return results, nil
}

func (jsonFormat) EncodeRequest(r *Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := &jsonWriter{}
	w.raw("{")
	w.key("amount_minor")
	w.int(r.AmountMinor)
	w.key("attempt")
	w.int(r.Attempt)
	w.key("callback_deadline")
	w.int(r.CallbackDeadline)
	w.key("card")
	if r.Card == nil {
		w.raw("null")
	} else {
		w.raw("{")
		w.key("brand")
		w.str(r.Card.Brand)
		w.key("masked_number")
		w.str(r.Card.MaskedNumber)
		w.raw("}")
	}
	w.key("currency_code")
	w.str(r.CurrencyCode)
	w.key("description")
	w.str(r.Description)
	w.key("kind")
	w.str(r.Kind)
	w.key("merchant")
	if r.Merchant == nil {
		w.raw("null")
	} else {
		m := r.Merchant
		w.raw("{")
		for _, kv := range [5][2]string{
			{"category_code", m.CategoryCode}, {"city", m.City}, {"country_code", m.CountryCode},
			{"merchant_id", m.MerchantID}, {"name", m.Name},
		} {
			w.key(kv[0])
			w.str(kv[1])
		}
		w.raw("}")
	}
	w.key("payment_id")
	w.str(r.PaymentID)
	w.key("request_id")
	w.str(r.RequestID)
	w.key("sealed_card")
	if r.SealedCard == nil {
		w.raw("null")
	} else {
		w.str(r.SealedCard.Base64())
	}
	w.raw("}")
	if err := checkSize(w.buf, EncodedMaxBytes); err != nil {
		return nil, err
	}
	return w.buf, nil
}

func writeResultJSON(w *jsonWriter, r *Result) {
	w.raw("{")
	w.key("event_id")
	w.str(r.EventID)
	w.key("failure_code")
	w.str(r.FailureCode)
	w.key("failure_message")
	w.str(r.FailureMessage)
	w.key("gateway_reference")
	w.str(r.GatewayReference)
	w.key("occur_time")
	w.int(r.OccurTime)
	w.key("outcome")
	w.str(string(r.Outcome))
	w.key("payment_id")
	w.str(r.PaymentID)
	w.raw("}")
}

func (jsonFormat) EncodeResult(r *Result) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := &jsonWriter{}
	writeResultJSON(w, r)
	if err := checkSize(w.buf, EncodedMaxBytes); err != nil {
		return nil, err
	}
	return w.buf, nil
}

func (jsonFormat) EncodeResults(results []Result) ([]byte, error) {
	if err := checkBatch(results); err != nil {
		return nil, err
	}
	w := &jsonWriter{}
	w.raw(`{"results":[`)
	for i := range results {
		if err := results[i].Validate(); err != nil {
			return nil, err
		}
		if i > 0 {
			w.raw(",")
		}
		writeResultJSON(w, &results[i])
		if len(w.buf) > BatchEncodedMaxBytes {
			return nil, formatErr(ReasonOversized, "") // stop early: it cannot shrink
		}
	}
	w.raw("]}")
	if err := checkSize(w.buf, BatchEncodedMaxBytes); err != nil {
		return nil, err
	}
	return w.buf, nil
}
