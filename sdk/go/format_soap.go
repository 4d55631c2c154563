package payrail

import (
	"encoding/xml"
	"errors"
	"strconv"
)

// The soap wire format: a SOAP 1.1 envelope, UTF-8, payrail's own namespace. A result
// (white space added here; the encoder emits none):
//
//	<?xml version='1.0' encoding='utf-8'?>
//	<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
//	               xmlns:pr="urn:payrail:gateway:v1">
//	  <soap:Body><pr:GatewayResult>
//	    <pr:event_id>...</pr:event_id> ... <pr:occur_time>1700000000</pr:occur_time>
//	  </pr:GatewayResult></soap:Body>
//	</soap:Envelope>
//
// A request is <pr:GatewayRequest> with the json format's field names (card and
// merchant as nested elements, left out when there is none); a batch is
// <pr:GatewayResultBatch> holding <pr:GatewayResult> elements. Integers are decimal
// without sign or leading zeros; text is never trimmed.
//
// Parsing refuses, as soon as it meets one, any document type declaration (and so any
// entity declaration), and any processing instruction other than the XML declaration
// (ReasonForbiddenMarkup): encoding/xml expands no external entities, but a DTD is
// refused all the same, as the Python SDK's defusedxml does. Unknown elements are
// ignored, duplicates refused; a soap:Header entry with mustUnderstand="1" is refused.

// Namespaces of the soap format.
const (
	SOAPEnvelopeNamespace = "http://schemas.xmlsoap.org/soap/envelope/"
	SOAPNamespace         = "urn:payrail:gateway:v1"
)

// xmlDepthMax bounds nesting; payrail's messages have depth 5.
const xmlDepthMax = 64

type soapFormat struct{}

func (soapFormat) Name() string        { return "soap" }
func (soapFormat) ContentType() string { return "text/xml; charset=utf-8" }

// ------------------------------------------------------------------------ encoding

const soapPrologue = "<?xml version='1.0' encoding='utf-8'?>\n" +
	`<soap:Envelope xmlns:soap="` + SOAPEnvelopeNamespace + `" xmlns:pr="` + SOAPNamespace + `"><soap:Body>`
const soapEpilogue = "</soap:Body></soap:Envelope>"

type xmlWriter struct{ buf []byte }

// text writes one leaf element as Python's ElementTree does: an empty one as
// <pr:name />, text with &, < and > escaped.
func (w *xmlWriter) text(name, value string) {
	if value == "" {
		w.buf = append(w.buf, "<pr:"+name+" />"...)
		return
	}
	w.buf = append(w.buf, "<pr:"+name+">"...)
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '&':
			w.buf = append(w.buf, "&amp;"...)
		case '<':
			w.buf = append(w.buf, "&lt;"...)
		case '>':
			w.buf = append(w.buf, "&gt;"...)
		default:
			w.buf = append(w.buf, c)
		}
	}
	w.buf = append(w.buf, "</pr:"+name+">"...)
}

func (w *xmlWriter) int(name string, value int64) { w.text(name, strconv.FormatInt(value, 10)) }
func (w *xmlWriter) raw(s string)                 { w.buf = append(w.buf, s...) }

func writeResultSOAP(w *xmlWriter, r *Result) {
	w.raw("<pr:GatewayResult>")
	w.text("event_id", r.EventID)
	w.text("payment_id", r.PaymentID)
	w.text("outcome", string(r.Outcome))
	w.text("failure_code", r.FailureCode)
	w.text("failure_message", r.FailureMessage)
	w.text("gateway_reference", r.GatewayReference)
	w.int("occur_time", r.OccurTime)
	w.raw("</pr:GatewayResult>")
}

func (soapFormat) EncodeRequest(r *Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := &xmlWriter{}
	w.raw(soapPrologue + "<pr:GatewayRequest>")
	w.text("request_id", r.RequestID)
	w.text("payment_id", r.PaymentID)
	w.int("attempt", r.Attempt)
	w.text("kind", r.Kind)
	w.int("amount_minor", r.AmountMinor)
	w.text("currency_code", r.CurrencyCode)
	if r.Card != nil {
		w.raw("<pr:card>")
		w.text("brand", r.Card.Brand)
		w.text("masked_number", r.Card.MaskedNumber)
		w.raw("</pr:card>")
	}
	if r.SealedCard != nil {
		w.text("sealed_card", r.SealedCard.Base64())
	}
	if m := r.Merchant; m != nil {
		w.raw("<pr:merchant>")
		w.text("merchant_id", m.MerchantID)
		w.text("name", m.Name)
		w.text("category_code", m.CategoryCode)
		w.text("country_code", m.CountryCode)
		w.text("city", m.City)
		w.raw("</pr:merchant>")
	}
	w.int("callback_deadline", r.CallbackDeadline)
	w.text("description", r.Description)
	w.raw("</pr:GatewayRequest>" + soapEpilogue)
	if err := checkSize(w.buf, EncodedMaxBytes); err != nil {
		return nil, err
	}
	return w.buf, nil
}

func (soapFormat) EncodeResult(r *Result) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := &xmlWriter{}
	w.raw(soapPrologue)
	writeResultSOAP(w, r)
	w.raw(soapEpilogue)
	if err := checkSize(w.buf, EncodedMaxBytes); err != nil {
		return nil, err
	}
	return w.buf, nil
}

func (soapFormat) EncodeResults(results []Result) ([]byte, error) {
	if err := checkBatch(results); err != nil {
		return nil, err
	}
	w := &xmlWriter{}
	w.raw(soapPrologue + "<pr:GatewayResultBatch>")
	for i := range results {
		if err := results[i].Validate(); err != nil {
			return nil, err
		}
		writeResultSOAP(w, &results[i])
		if len(w.buf) > BatchEncodedMaxBytes {
			return nil, formatErr(ReasonOversized, "")
		}
	}
	w.raw("</pr:GatewayResultBatch>" + soapEpilogue)
	if err := checkSize(w.buf, BatchEncodedMaxBytes); err != nil {
		return nil, err
	}
	return w.buf, nil
}

// ------------------------------------------------------------------------ parsing

func soapMessage(data []byte, name string, maxBytes int) (*xmlElement, error) {
	if err := checkSize(data, maxBytes); err != nil {
		return nil, err
	}
	root, err := parseXML(data)
	if errors.Is(err, errForbidden) {
		return nil, formatErr(ReasonForbiddenMarkup, "")
	}
	if err != nil {
		return nil, formatErr(ReasonMalformed, "")
	}
	if root.name != (xml.Name{Space: SOAPEnvelopeNamespace, Local: "Envelope"}) {
		return nil, formatErr(ReasonMalformed, "Envelope")
	}
	children := root.children
	if len(children) > 0 && children[0].name == (xml.Name{Space: SOAPEnvelopeNamespace, Local: "Header"}) {
		for _, entry := range children[0].children {
			if v, ok := entry.attr(SOAPEnvelopeNamespace, "mustUnderstand"); ok && v == "1" {
				return nil, formatErr(ReasonMalformed, "Header")
			}
		}
		children = children[1:]
	}
	if len(children) != 1 || children[0].name != (xml.Name{Space: SOAPEnvelopeNamespace, Local: "Body"}) {
		return nil, formatErr(ReasonMalformed, "Body")
	}
	body := children[0].children
	if len(body) != 1 || body[0].name != (xml.Name{Space: SOAPNamespace, Local: name}) {
		// A soap:Fault, another message or several: not what this decoder reads.
		return nil, formatErr(ReasonMalformed, name)
	}
	return body[0], nil
}

// soapFields: the children in payrail's namespace by local name (others are
// extensions this version does not read); a duplicate is malformed.
func soapFields(el *xmlElement, path string) (map[string]*xmlElement, error) {
	found := map[string]*xmlElement{}
	for _, child := range el.children {
		if child.name.Space != SOAPNamespace {
			continue
		}
		if _, dup := found[child.name.Local]; dup {
			return nil, formatErr(ReasonMalformed, path+child.name.Local)
		}
		found[child.name.Local] = child
	}
	return found, nil
}

func soapText(fields map[string]*xmlElement, key, path string, optional bool) (string, error) {
	el, ok := fields[key]
	if !ok {
		if optional {
			return "", nil
		}
		return "", formatErr(ReasonMissingField, path)
	}
	if len(el.children) > 0 {
		return "", formatErr(ReasonInvalidField, path)
	}
	return el.text.String(), nil
}

// soapInt: 0 or 1 to 19 digits without a leading zero, within int64.
func soapInt(fields map[string]*xmlElement, key string) (int64, error) {
	text, err := soapText(fields, key, key, false)
	if err != nil {
		return 0, err
	}
	if text == "" || len(text) > 19 || !allBytes(text, isDigit) || len(text) > 1 && text[0] == '0' {
		return 0, formatErr(ReasonInvalidField, key)
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, formatErr(ReasonInvalidField, key)
	}
	return n, nil
}

func (soapFormat) DecodeRequest(data []byte) (*Request, error) {
	message, err := soapMessage(data, "GatewayRequest", EncodedMaxBytes)
	if err != nil {
		return nil, err
	}
	fields, err := soapFields(message, "")
	if err != nil {
		return nil, err
	}
	r := &Request{}
	if el, ok := fields["card"]; ok {
		cf, err := soapFields(el, "card.")
		if err != nil {
			return nil, err
		}
		card := &MaskedCard{}
		if card.Brand, err = soapText(cf, "brand", "card.brand", false); err != nil {
			return nil, err
		}
		if card.MaskedNumber, err = soapText(cf, "masked_number", "card.masked_number", false); err != nil {
			return nil, err
		}
		if err := card.Validate(); err != nil {
			return nil, err
		}
		r.Card = card
	}
	if el, ok := fields["merchant"]; ok {
		mf, err := soapFields(el, "merchant.")
		if err != nil {
			return nil, err
		}
		var values [5]string
		for i, key := range merchantKeys {
			if values[i], err = soapText(mf, key, "merchant."+key, false); err != nil {
				return nil, err
			}
		}
		r.Merchant = &Merchant{values[0], values[1], values[2], values[3], values[4]}
		if err := r.Merchant.Validate(); err != nil {
			return nil, err
		}
	}
	if _, ok := fields["sealed_card"]; ok {
		text, err := soapText(fields, "sealed_card", "sealed_card", false)
		if err != nil {
			return nil, err
		}
		if r.SealedCard, err = ParseSealedCardBase64(text); err != nil {
			return nil, formatErr(ReasonInvalidField, "sealed_card")
		}
	}
	if r.RequestID, err = soapText(fields, "request_id", "request_id", false); err != nil {
		return nil, err
	}
	if r.PaymentID, err = soapText(fields, "payment_id", "payment_id", false); err != nil {
		return nil, err
	}
	if r.Attempt, err = soapInt(fields, "attempt"); err != nil {
		return nil, err
	}
	if r.Kind, err = soapText(fields, "kind", "kind", false); err != nil {
		return nil, err
	}
	if r.AmountMinor, err = soapInt(fields, "amount_minor"); err != nil {
		return nil, err
	}
	if r.CurrencyCode, err = soapText(fields, "currency_code", "currency_code", false); err != nil {
		return nil, err
	}
	if r.CallbackDeadline, err = soapInt(fields, "callback_deadline"); err != nil {
		return nil, err
	}
	if r.Description, err = soapText(fields, "description", "description", true); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

func resultFromSOAP(el *xmlElement) (*Result, error) {
	fields, err := soapFields(el, "")
	if err != nil {
		return nil, err
	}
	r := &Result{}
	outcome, err := soapText(fields, "outcome", "outcome", false)
	if err != nil {
		return nil, err
	}
	if outcome != string(Approved) && outcome != string(Declined) {
		return nil, formatErr(ReasonInvalidField, "outcome")
	}
	r.Outcome = OutcomeKind(outcome)
	if r.EventID, err = soapText(fields, "event_id", "event_id", false); err != nil {
		return nil, err
	}
	if r.PaymentID, err = soapText(fields, "payment_id", "payment_id", false); err != nil {
		return nil, err
	}
	if r.FailureCode, err = soapText(fields, "failure_code", "failure_code", true); err != nil {
		return nil, err
	}
	if r.FailureMessage, err = soapText(fields, "failure_message", "failure_message", true); err != nil {
		return nil, err
	}
	if r.GatewayReference, err = soapText(fields, "gateway_reference", "gateway_reference", true); err != nil {
		return nil, err
	}
	if r.OccurTime, err = soapInt(fields, "occur_time"); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

func (soapFormat) DecodeResult(data []byte) (*Result, error) {
	message, err := soapMessage(data, "GatewayResult", EncodedMaxBytes)
	if err != nil {
		return nil, err
	}
	return resultFromSOAP(message)
}

func (soapFormat) DecodeResults(data []byte) ([]Result, error) {
	batch, err := soapMessage(data, "GatewayResultBatch", BatchEncodedMaxBytes)
	if err != nil {
		return nil, err
	}
	var results []Result
	for _, child := range batch.children {
		if child.name.Space != SOAPNamespace {
			continue // another namespace: an extension this version does not read
		}
		if child.name.Local != "GatewayResult" {
			return nil, formatErr(ReasonMalformed, "results")
		}
		r, err := resultFromSOAP(child)
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
