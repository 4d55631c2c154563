package payrail

import (
	"context"
	"time"
)

// Handler decides on one payment. card is nil for wallet-funded purchases (no card).
// A nil Outcome means "do not answer": the payment then times out at payrail and is
// re-dispatched or failed by payrail's janitor. An error means "could not decide now":
// the worker calls Charge again for the same request after a backoff.
//
// Charge must be deterministic per request, or the gateway must remember its own
// decisions: the worker remembers the results it decided (AnsweredMax payments) and
// re-sends the same result when a request is redelivered, but after a restart a
// request whose offset was not yet committed is handed to Charge again.
type Handler interface {
	Charge(ctx context.Context, req *Request, card *Card) (*Outcome, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, req *Request, card *Card) (*Outcome, error)

// Charge calls f.
func (f HandlerFunc) Charge(ctx context.Context, req *Request, card *Card) (*Outcome, error) {
	return f(ctx, req, card)
}

// Outcome is a Handler's decision. The worker turns it into a Result with event id
// "<request_id>/result" and the time of the decision.
type Outcome struct {
	Kind OutcomeKind
	// FailureCode is required for Declined (e.g. "card_declined"), empty for Approved.
	FailureCode    string
	FailureMessage string
	// GatewayReference is the gateway's own reference for the charge.
	GatewayReference string
}

// Approve is an approval with the gateway's reference.
func Approve(gatewayReference string) *Outcome {
	return &Outcome{Kind: Approved, GatewayReference: gatewayReference}
}

// Decline is a decline with a machine-readable code and a message.
func Decline(failureCode, failureMessage string) *Outcome {
	return &Outcome{Kind: Declined, FailureCode: failureCode, FailureMessage: failureMessage}
}

// ResultFor is the Result of req with outcome o decided at decidedAt, with the event id
// payrail de-duplicates on; a *FormatError when o breaks a field rule.
func ResultFor(req *Request, o *Outcome, decidedAt time.Time) (Result, error) {
	r := Result{
		EventID:          req.RequestID + "/result",
		PaymentID:        req.PaymentID,
		Outcome:          o.Kind,
		FailureCode:      o.FailureCode,
		FailureMessage:   o.FailureMessage,
		GatewayReference: o.GatewayReference,
		OccurTime:        decidedAt.Unix(),
	}
	if err := r.Validate(); err != nil {
		return Result{}, err
	}
	return r, nil
}

type requestIDKey struct{}

// RequestIDFromContext is payrail's request id of the request being handled ("" if it
// sent none): the worker puts it in the context it passes to Charge.
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}
