package payrail

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Limits of the contract (gateway_sdk/formats/base.py): every decoder and encoder
// enforces them.
const (
	// EncodedMaxBytes bounds one encoded request or result; the largest legitimate
	// request is under 8 KiB even with every text field at its maximum.
	EncodedMaxBytes = 16_384
	// BatchResultsMax is the most results one ReportResults payload may carry.
	BatchResultsMax = 500
	// BatchEncodedMaxBytes bounds one encoded batch of results.
	BatchEncodedMaxBytes = 1_048_576
	// IDMaxChars bounds request, payment and event ids (visible ASCII).
	IDMaxChars = 128
	// DescriptionMaxChars bounds Request.Description, in characters (code points).
	DescriptionMaxChars = 500
	// FailureCodeMaxChars bounds Result.FailureCode.
	FailureCodeMaxChars = 64
	// FailureMessageMaxChars bounds Result.FailureMessage, in characters.
	FailureMessageMaxChars = 500
	// GatewayReferenceMaxChars bounds Result.GatewayReference, in characters.
	GatewayReferenceMaxChars = 128
	// MerchantIDMaxChars bounds Merchant.MerchantID, in characters.
	MerchantIDMaxChars = 64
	// MerchantNameMaxChars bounds Merchant.Name, in characters.
	MerchantNameMaxChars = 100
	// MerchantCityMaxChars bounds Merchant.City, in characters.
	MerchantCityMaxChars = 100
	// BrandMaxChars bounds MaskedCard.Brand.
	BrandMaxChars = 32
	// AttemptMax is the largest Request.Attempt (int32 in payrail's contracts).
	AttemptMax = 1<<31 - 1
	// UnixSecondsMax is 9999-12-31T23:59:59Z: every format can represent it.
	UnixSecondsMax = 253_402_300_799
)

// Kinds of payment a Request may carry.
const (
	KindDeposit    = "DEPOSIT"
	KindWithdrawal = "WITHDRAWAL"
	KindPurchase   = "PURCHASE"
)

// OutcomeKind is what a gateway decided: Approved or Declined.
type OutcomeKind string

// The two outcomes a Result may carry.
const (
	Approved OutcomeKind = "APPROVED"
	Declined OutcomeKind = "DECLINED"
)

// FormatReason says why bytes or a message were refused; the values are stable.
type FormatReason string

// Reasons of a FormatError.
const (
	ReasonOversized       FormatReason = "oversized"
	ReasonMalformed       FormatReason = "malformed"
	ReasonForbiddenMarkup FormatReason = "forbidden_markup"
	ReasonMissingField    FormatReason = "missing_field"
	ReasonInvalidField    FormatReason = "invalid_field"
	ReasonUnknownFormat   FormatReason = "unknown_format"
)

// ErrFormat matches every *FormatError with errors.Is.
var ErrFormat = errors.New("payrail: not a valid message")

// FormatError is bytes that are not a valid message of a format, or a field out of its
// rules. Field names the offending field ("card.brand") when there is one. Neither the
// message nor the fields ever contain the input itself.
type FormatError struct {
	Reason FormatReason
	Field  string
}

func (e *FormatError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("payrail format: %s: %s", e.Reason, e.Field)
	}
	return "payrail format: " + string(e.Reason)
}

// Is makes errors.Is(err, ErrFormat) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrFormat }

func formatErr(reason FormatReason, field string) error {
	return &FormatError{Reason: reason, Field: field}
}

// MaskedCard is what a gateway may see of the card in clear.
type MaskedCard struct {
	// Brand is VISA, MASTERCARD, AMERICAN_EXPRESS, DISCOVER or UNSPECIFIED.
	Brand string
	// MaskedNumber is BIN and last four around stars ("424242******4242"), or empty.
	MaskedNumber string
}

// Merchant is where a purchase is made; every field may be empty.
type Merchant struct {
	MerchantID   string
	Name         string
	CategoryCode string // ISO 18245 MCC, four digits
	CountryCode  string // ISO 3166-1 alpha-2, upper case
	City         string
}

// Request is one payment handed to a gateway. The card is masked except inside
// SealedCard, which only the gateway's private key opens (associated data: PaymentID).
type Request struct {
	// RequestID is the dispatch's event id: the same on a redelivery.
	RequestID string
	PaymentID string
	// Attempt is 1 for the first dispatch, more for re-dispatches of the same payment.
	Attempt int64
	// Kind is KindDeposit, KindWithdrawal or KindPurchase.
	Kind string
	// AmountMinor is positive, in the currency's minor units.
	AmountMinor int64
	// CurrencyCode is ISO 4217 alphabetic, e.g. "CAD".
	CurrencyCode string
	Card         *MaskedCard
	// SealedCard is nil for wallet-funded purchases.
	SealedCard *SealedCard
	// Merchant is set for purchases only.
	Merchant *Merchant
	// CallbackDeadline is in unix seconds: report the result before it.
	CallbackDeadline int64
	Description      string
}

// Result is a gateway's outcome for one payment; it mirrors
// payrail.callbacks.v1.GatewayResult. Approved carries no failure code or message;
// Declined needs a failure code.
type Result struct {
	// EventID is unique per callback event; payrail applies an event id once.
	EventID   string
	PaymentID string
	Outcome   OutcomeKind
	// FailureCode is machine readable, e.g. "card_declined".
	FailureCode      string
	FailureMessage   string
	GatewayReference string
	// OccurTime is when the provider decided, in unix seconds.
	OccurTime int64
}

// ------------------------------------------------------------------- field rules

// badTypes names the fields a decoder found with the wrong type; validation reports
// them at their place in the order of checks, as the Python SDK does.
type badTypes map[string]bool

func isIDChar(c byte) bool { return c >= 0x21 && c <= 0x7e }

func checkID(field, value string, bad badTypes) error {
	if bad[field] {
		return formatErr(ReasonInvalidField, field)
	}
	if value == "" {
		return formatErr(ReasonMissingField, field)
	}
	if len(value) > IDMaxChars {
		return formatErr(ReasonInvalidField, field)
	}
	for i := 0; i < len(value); i++ {
		if !isIDChar(value[i]) {
			return formatErr(ReasonInvalidField, field)
		}
	}
	return nil
}

// checkText: at most maxChars code points, valid UTF-8 (a lone surrogate a decoder met
// is kept as invalid UTF-8 so it lands here), no control characters except those in
// allow, no U+FFFE/U+FFFF (not XML characters, so every format can carry every value).
func checkText(field, value string, maxChars int, allow string, bad badTypes) error {
	if bad[field] {
		return formatErr(ReasonInvalidField, field)
	}
	if !utf8.ValidString(value) || utf8.RuneCountInString(value) > maxChars {
		return formatErr(ReasonInvalidField, field)
	}
	for _, r := range value {
		if unicode.IsControl(r) && !containsRune(allow, r) || r == 0xFFFE || r == 0xFFFF {
			return formatErr(ReasonInvalidField, field)
		}
	}
	return nil
}

func containsRune(s string, r rune) bool {
	for _, c := range s {
		if c == r {
			return true
		}
	}
	return false
}

func checkMatch(field, value string, maxChars int, ok func(string) bool, bad badTypes) error {
	if bad[field] || len(value) > maxChars || !ok(value) {
		return formatErr(ReasonInvalidField, field)
	}
	return nil
}

func checkRange(field string, value, minimum, maximum int64, bad badTypes) error {
	if bad[field] || value < minimum || value > maximum {
		return formatErr(ReasonInvalidField, field)
	}
	return nil
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

func currencyShape(s string) bool { return len(s) == 3 && allBytes(s, isUpper) }
func brandShape(s string) bool {
	return allBytes(s, func(c byte) bool { return isUpper(c) || c == '_' })
}
func mccShape(s string) bool     { return s == "" || len(s) == 4 && allBytes(s, isDigit) }
func countryShape(s string) bool { return s == "" || len(s) == 2 && allBytes(s, isUpper) }
func failureCodeShape(s string) bool {
	return allBytes(s, func(c byte) bool {
		return isDigit(c) || isUpper(c) || c >= 'a' && c <= 'z' || c == '_' || c == '.' || c == ':' || c == '-'
	})
}

// maskedShape: six digits, 2 to 9 stars, four digits (card numbers of 12 to 19 digits),
// or nothing; a full card number cannot fit this shape.
func maskedShape(s string) bool {
	if s == "" {
		return true
	}
	n := len(s)
	if n < 12 || n > 19 {
		return false
	}
	return allBytes(s[:6], isDigit) && allBytes(s[n-4:], isDigit) &&
		allBytes(s[6:n-4], func(c byte) bool { return c == '*' })
}

// Validate checks every field rule of the contract; a *FormatError names the first
// field that breaks one.
func (c *MaskedCard) Validate() error { return c.validate(nil) }

func (c *MaskedCard) validate(bad badTypes) error {
	if err := checkMatch("card.brand", c.Brand, BrandMaxChars, brandShape, bad); err != nil {
		return err
	}
	return checkMatch("card.masked_number", c.MaskedNumber, 19, maskedShape, bad)
}

// Validate checks every field rule of the contract.
func (m *Merchant) Validate() error { return m.validate(nil) }

func (m *Merchant) validate(bad badTypes) error {
	checks := []error{
		checkText("merchant.merchant_id", m.MerchantID, MerchantIDMaxChars, "", bad),
		checkText("merchant.name", m.Name, MerchantNameMaxChars, "", bad),
		checkMatch("merchant.category_code", m.CategoryCode, 4, mccShape, bad),
		checkMatch("merchant.country_code", m.CountryCode, 2, countryShape, bad),
		checkText("merchant.city", m.City, MerchantCityMaxChars, "", bad),
	}
	return firstErr(checks)
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Validate checks every field rule of the contract, in the order the Python SDK does.
func (r *Request) Validate() error { return r.validate(nil) }

func (r *Request) validate(bad badTypes) error {
	if err := checkID("request_id", r.RequestID, bad); err != nil {
		return err
	}
	if err := checkID("payment_id", r.PaymentID, bad); err != nil {
		return err
	}
	if err := checkRange("attempt", r.Attempt, 1, AttemptMax, bad); err != nil {
		return err
	}
	if bad["kind"] || r.Kind != KindDeposit && r.Kind != KindWithdrawal && r.Kind != KindPurchase {
		return formatErr(ReasonInvalidField, "kind")
	}
	if err := checkRange("amount_minor", r.AmountMinor, 1, 1<<63-1, bad); err != nil {
		return err
	}
	if err := checkMatch("currency_code", r.CurrencyCode, 3, currencyShape, bad); err != nil {
		return err
	}
	if r.Card != nil {
		if err := r.Card.validate(bad); err != nil {
			return err
		}
	}
	if r.Merchant != nil {
		if err := r.Merchant.validate(bad); err != nil {
			return err
		}
	}
	if err := checkRange("callback_deadline", r.CallbackDeadline, 0, UnixSecondsMax, bad); err != nil {
		return err
	}
	return checkText("description", r.Description, DescriptionMaxChars, "\n\t", bad)
}

// Validate checks every field rule of the contract, in the order the Python SDK does.
func (r *Result) Validate() error { return r.validate(nil) }

func (r *Result) validate(bad badTypes) error {
	if err := checkID("event_id", r.EventID, bad); err != nil {
		return err
	}
	if err := checkID("payment_id", r.PaymentID, bad); err != nil {
		return err
	}
	if bad["outcome"] || r.Outcome != Approved && r.Outcome != Declined {
		return formatErr(ReasonInvalidField, "outcome")
	}
	checks := []error{
		checkMatch("failure_code", r.FailureCode, FailureCodeMaxChars, failureCodeShape, bad),
		checkText("failure_message", r.FailureMessage, FailureMessageMaxChars, "\n\t", bad),
		checkText("gateway_reference", r.GatewayReference, GatewayReferenceMaxChars, "", bad),
		checkRange("occur_time", r.OccurTime, 0, UnixSecondsMax, bad),
	}
	if err := firstErr(checks); err != nil {
		return err
	}
	if r.Outcome == Approved && (r.FailureCode != "" || r.FailureMessage != "") {
		return formatErr(ReasonInvalidField, "failure_code")
	}
	if r.Outcome == Declined && r.FailureCode == "" {
		return formatErr(ReasonMissingField, "failure_code")
	}
	return nil
}

// checkBatch: 1 to BatchResultsMax results, each valid.
func checkBatch(results []Result) error {
	if len(results) < 1 || len(results) > BatchResultsMax {
		return formatErr(ReasonInvalidField, "results")
	}
	return nil
}
