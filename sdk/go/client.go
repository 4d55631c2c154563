package payrail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	callbacksv1 "github.com/payrail/payrail/generated/go/payrail/callbacks/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RequestIDKey is payrail's request id: the Kafka header of a request and the gRPC
// metadata key of the call that reports its result.
const RequestIDKey = "x-request-id"

// Disposition is what payrail did with one reported result.
type Disposition int

// Dispositions of a reported result (ReportedResult.disposition in the contract).
const (
	// DispositionApplied: the payment is now COMPLETED or FAILED.
	DispositionApplied Disposition = iota + 1
	// DispositionDuplicate: this event id (or the same outcome) was applied before.
	DispositionDuplicate
	// DispositionNotFound: no such payment was dispatched to this gateway (final).
	DispositionNotFound
	// DispositionConflict: the payment holds another final outcome (final).
	DispositionConflict
)

func (d Disposition) String() string {
	switch d {
	case DispositionApplied:
		return "APPLIED"
	case DispositionDuplicate:
		return "DUPLICATE"
	case DispositionNotFound:
		return "NOT_FOUND"
	case DispositionConflict:
		return "CONFLICT"
	}
	return "UNSPECIFIED"
}

// Reported is payrail's answer for one result, whether it went alone (ReportResult) or
// in a batch (ReportResults): a NOT_FOUND or FAILED_PRECONDITION answer to a single
// call is a DispositionNotFound or DispositionConflict here, as a batch reports it.
type Reported struct {
	EventID     string
	PaymentID   string
	Disposition Disposition
	// PaymentStatus names the payment's state for a DispositionConflict in a batch.
	PaymentStatus string
}

// Final reports whether payrail refused the result for good (not found, conflict):
// reporting it again changes nothing.
func (r Reported) Final() bool {
	return r.Disposition == DispositionNotFound || r.Disposition == DispositionConflict
}

// ClientOptions tune a CallbackClient; zero values take the documented defaults.
type ClientOptions struct {
	// CallTimeout is the deadline of one call (default 5 s).
	CallTimeout time.Duration
	// BackoffBase is the ceiling of the first pause between tries (default 200 ms); it
	// doubles per try up to BackoffMax (default 5 s), and each pause is drawn
	// uniformly below the ceiling (full jitter).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// UnexplainedAttemptsMax bounds the tries of one ReportResult that payrail answers
	// UNKNOWN or INTERNAL (default 5); then the error is returned.
	UnexplainedAttemptsMax int
	// Logger gets a warning per transient failure streak (default slog.Default()).
	Logger *slog.Logger
}

func (o *ClientOptions) defaults() {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 5 * time.Second
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 200 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Second
	}
	if o.UnexplainedAttemptsMax <= 0 {
		o.UnexplainedAttemptsMax = 5
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// CallbackClient reports results to payrail's CallbackService, signed with the
// gateway's secrets. Calls that get no answer or a transient status (UNAVAILABLE,
// DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, CANCELLED) are re-signed with a fresh
// timestamp and retried with capped, jittered backoff until they are answered or ctx
// ends: payrail applies an event id at most once, so retrying is always safe. Safe for
// concurrent use.
type CallbackClient struct {
	stub      callbacksv1.CallbackServiceClient
	gatewayID string
	format    Format
	secrets   []Secret
	opts      ClientOptions
	// retrying counts calls that are between tries of a transient failure.
	retrying atomic.Int64
	now      func() time.Time
}

// Dial opens a plaintext connection to payrail's CallbackService (gateway_svc) that
// notices payrail is back within about two seconds after an outage (gRPC's default
// reconnect backoff grows to two minutes), with gRPC's own retries off: the client
// retries itself.
func Dial(target string) (*grpc.ClientConn, error) {
	return grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second,
			},
			MinConnectTimeout: 2 * time.Second,
		}),
	)
}

// NewCallbackClient returns a client for gatewayID, encoding results in format and
// signing with secrets (1 to SecretsMax; more than one while a secret rotates).
func NewCallbackClient(conn grpc.ClientConnInterface, gatewayID string, format Format, secrets []Secret, opts ClientOptions) (*CallbackClient, error) {
	if gatewayID == "" || format == nil {
		return nil, errors.New("payrail: a callback client needs a gateway id and a format")
	}
	if len(secrets) < 1 || len(secrets) > SecretsMax {
		return nil, fmt.Errorf("payrail: a callback client signs with 1 to %d secrets", SecretsMax)
	}
	opts.defaults()
	return &CallbackClient{
		stub:      callbacksv1.NewCallbackServiceClient(conn),
		gatewayID: gatewayID,
		format:    format,
		secrets:   append([]Secret(nil), secrets...),
		opts:      opts,
		now:       time.Now,
	}, nil
}

// Waiting reports whether a call is waiting to retry after a transient failure:
// payrail is unreachable or busy (for health checks).
func (c *CallbackClient) Waiting() bool { return c.retrying.Load() > 0 }

func transientCode(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled:
		return true
	}
	return false
}

func unexplainedCode(code codes.Code) bool { return code == codes.Unknown || code == codes.Internal }

// sleepBackoff pauses before try attempt+1: full jitter below a capped exponential.
func sleepBackoff(ctx context.Context, attempt int, base, ceiling time.Duration) error {
	limit := base << min(attempt-1, 20)
	if limit > ceiling || limit <= 0 {
		limit = ceiling
	}
	timer := time.NewTimer(rand.N(limit) + time.Millisecond)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// call signs payload afresh for every try and retries transient failures until ctx
// ends; unexplained ones (UNKNOWN, INTERNAL) up to unexplainedMax tries (0: none).
func (c *CallbackClient) call(ctx context.Context, payload []byte, requestID string, unexplainedMax int,
	do func(ctx context.Context) error) error {
	retrying := false
	defer func() {
		if retrying {
			c.retrying.Add(-1)
		}
	}()
	for attempt := 1; ; attempt++ {
		// A fresh timestamp per try: a retry after a long pause must not arrive stale.
		header, err := Sign(payload, c.secrets, c.now().Unix())
		if err != nil {
			return err
		}
		md := metadata.Pairs(SignatureHeader, header)
		if requestID != "" {
			md.Set(RequestIDKey, requestID)
		}
		callCtx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, md), c.opts.CallTimeout)
		err = do(callCtx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		code := status.Code(err)
		switch {
		case transientCode(code):
		case unexplainedCode(code) && attempt < unexplainedMax:
		default:
			return err
		}
		if !retrying {
			retrying = true
			c.retrying.Add(1)
		}
		if attempt == 1 || attempt%10 == 0 {
			c.opts.Logger.Warn("callback not answered; retrying", "code", code.String(), "attempt", attempt)
		}
		if err := sleepBackoff(ctx, attempt, c.opts.BackoffBase, c.opts.BackoffMax); err != nil {
			return err
		}
	}
}

// ReportResult reports one result with CallbackService/ReportResult. requestID (may be
// "") is payrail's request id of the request it answers, sent as x-request-id. A
// refusal for good comes back as a Reported with DispositionNotFound or
// DispositionConflict; other refusals are returned as gRPC status errors (status.Code
// tells which), after UnexplainedAttemptsMax tries for UNKNOWN and INTERNAL.
func (c *CallbackClient) ReportResult(ctx context.Context, result Result, requestID string) (Reported, error) {
	payload, err := c.format.EncodeResult(&result)
	if err != nil {
		return Reported{}, err
	}
	request := &callbacksv1.ReportResultRequest{GatewayId: c.gatewayID, Payload: payload}
	var reply *callbacksv1.ReportResultResponse
	err = c.call(ctx, payload, requestID, c.opts.UnexplainedAttemptsMax, func(ctx context.Context) error {
		var err error
		reply, err = c.stub.ReportResult(ctx, request)
		return err
	})
	reported := Reported{EventID: result.EventID, PaymentID: result.PaymentID}
	switch status.Code(err) {
	case codes.OK:
		reported.Disposition = DispositionApplied
		if reply.GetDuplicate() {
			reported.Disposition = DispositionDuplicate
		}
		return reported, nil
	case codes.NotFound:
		reported.Disposition = DispositionNotFound
		return reported, nil
	case codes.FailedPrecondition:
		reported.Disposition = DispositionConflict
		return reported, nil
	}
	return Reported{}, err
}

// ErrBatchReply is a batch reply that does not hold one entry per result.
var ErrBatchReply = errors.New("payrail: a batch reply with another number of results")

// ReportResults reports results with CallbackService/ReportResults and returns what
// payrail did with each, in order. requestIDs is empty or holds one id per result (""
// where there is none); the first non-empty one goes as the call's x-request-id. More
// results than one call may carry (BatchResultsMax, or more bytes than
// BatchEncodedMaxBytes) go in several calls, one after the other, a batch too large to
// encode being halved. A call's error is returned as a gRPC status error, without
// retrying UNKNOWN or INTERNAL (payrail asks for those results one by one); results of
// earlier calls stand, and reporting them again is harmless.
func (c *CallbackClient) ReportResults(ctx context.Context, results []Result, requestIDs []string) ([]Reported, error) {
	if len(requestIDs) != 0 && len(requestIDs) != len(results) {
		return nil, errors.New("payrail: requestIDs must be empty or hold one id per result")
	}
	if len(requestIDs) == 0 {
		requestIDs = make([]string, len(results))
	}
	var out []Reported
	for start := 0; start < len(results); start += BatchResultsMax {
		end := min(start+BatchResultsMax, len(results))
		replies, err := c.reportFitting(ctx, results[start:end], requestIDs[start:end])
		out = append(out, replies...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// reportFitting makes one call, or two for the halves when the format cannot encode
// the results within its bound.
func (c *CallbackClient) reportFitting(ctx context.Context, results []Result, requestIDs []string) ([]Reported, error) {
	payload, err := c.format.EncodeResults(results)
	var fe *FormatError
	if errors.As(err, &fe) && fe.Reason == ReasonOversized && len(results) > 1 {
		half := len(results) / 2
		first, err := c.reportFitting(ctx, results[:half], requestIDs[:half])
		if err != nil {
			return first, err
		}
		second, err := c.reportFitting(ctx, results[half:], requestIDs[half:])
		return append(first, second...), err
	}
	if err != nil {
		return nil, err
	}
	request := &callbacksv1.ReportResultsRequest{GatewayId: c.gatewayID, Payload: payload}
	firstID := ""
	for _, id := range requestIDs {
		if id != "" && firstID == "" {
			firstID = id
		}
	}
	if firstID != "" {
		request.RequestIds = requestIDs
	}
	var reply *callbacksv1.ReportResultsResponse
	err = c.call(ctx, payload, firstID, 0, func(ctx context.Context) error {
		var err error
		reply, err = c.stub.ReportResults(ctx, request)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(reply.GetResults()) != len(results) {
		return nil, ErrBatchReply
	}
	out := make([]Reported, len(results))
	for i, r := range reply.GetResults() {
		out[i] = Reported{
			EventID:       r.GetEventId(),
			PaymentID:     r.GetPaymentId(),
			Disposition:   Disposition(r.GetDisposition()),
			PaymentStatus: r.GetPaymentStatus(),
		}
	}
	return out, nil
}
