package payrail

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The worker's handling of one request, without Kafka: decode, open, decide, report to
// an in-process payrail (Run's Kafka loop is exercised end to end by
// tests/e2e/test_go_gateway.py).

type workerFixture struct {
	worker  *Worker
	fake    *fakePayrail
	charges atomic.Int64
	logs    *bytes.Buffer
	request func(id, payment string) []byte
}

func newWorkerFixture(t *testing.T, decide func(req *Request, card *Card) (*Outcome, error)) *workerFixture {
	t.Helper()
	fake, client := startPayrail(t, Protobuf)
	key, _ := GenerateKey()
	fx := &workerFixture{fake: fake, logs: &bytes.Buffer{}}
	worker, err := NewWorker(WorkerConfig{
		GatewayID: "gw-test", Brokers: []string{"127.0.0.1:1"}, Format: Protobuf, PrivateKey: key,
		Client: client, BackoffMax: 5 * time.Millisecond,
		Batcher: BatcherOptions{Linger: time.Millisecond},
		Logger:  slog.New(NewLogHandler(fx.logs, slog.LevelDebug, "test")),
		Handler: HandlerFunc(func(ctx context.Context, req *Request, card *Card) (*Outcome, error) {
			fx.charges.Add(1)
			return decide(req, card)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(worker.batcher.Close)
	fx.worker = worker
	fx.request = func(id, payment string) []byte {
		card, _ := NewCard("4242424242424242", 12, 2031, "123", "")
		sealed, err := SealCard(key.PublicKey(), card, payment)
		if err != nil {
			t.Fatal(err)
		}
		data, err := JSON.EncodeRequest(&Request{RequestID: id, PaymentID: payment, Attempt: 1, Kind: KindDeposit,
			AmountMinor: 100, CurrencyCode: "CAD", Card: &MaskedCard{"VISA", "424242******4242"}, SealedCard: sealed,
			CallbackDeadline: 1_700_000_000})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	return fx
}

func approveCard(req *Request, card *Card) (*Outcome, error) {
	if card == nil || card.Number() != "4242424242424242" {
		return Decline("card_declined", "no card"), nil
	}
	return Approve("sbx_" + req.RequestID), nil
}

func TestWorkerReportsTheHandlersOutcomeOnce(t *testing.T) {
	fx := newWorkerFixture(t, approveCard)
	ctx := context.Background()
	if !fx.worker.handle(ctx, fx.request("r-1", "p-1"), "trace-1") {
		t.Fatal("not handled")
	}
	// A redelivery, and a re-dispatch of the same payment: the handler is not called
	// again; the same result (same event id) is reported again.
	fx.worker.handle(ctx, fx.request("r-1", "p-1"), "trace-1")
	fx.worker.handle(ctx, fx.request("r-2", "p-1"), "trace-2")
	if fx.charges.Load() != 1 {
		t.Fatalf("charged %d times", fx.charges.Load())
	}
	calls := fx.fake.recorded()
	if len(calls) != 3 {
		t.Fatalf("%d calls", len(calls))
	}
	for _, c := range calls {
		r := c.results[0]
		if r.EventID != "r-1/result" || r.PaymentID != "p-1" || r.Outcome != Approved || r.GatewayReference != "sbx_r-1" {
			t.Fatalf("reported %+v", r)
		}
	}
	if calls[0].requestID != "trace-1" || calls[2].requestID != "trace-2" {
		t.Fatal("request id not propagated")
	}
	if !strings.Contains(fx.logs.String(), `"msg":"result reported"`) || strings.Contains(fx.logs.String(), "4242424242424242") {
		t.Fatalf("logs: %s", fx.logs)
	}
}

func TestWorkerDropsWhatCannotBeHandled(t *testing.T) {
	fx := newWorkerFixture(t, func(*Request, *Card) (*Outcome, error) { return nil, nil })
	ctx := context.Background()
	// Undecodable: dropped (handled), nothing reported.
	if !fx.worker.handle(ctx, []byte(`{"not":"a request"}`), "") {
		t.Fatal("an undecodable request blocks its partition")
	}
	// The handler chose not to answer: handled, nothing reported.
	if !fx.worker.handle(ctx, fx.request("r-1", "p-1"), "") || len(fx.fake.recorded()) != 0 {
		t.Fatal("a never-answered request was reported")
	}
	// A card sealed for another payment: declined card_unreadable, remembered.
	other := fx.request("r-2", "p-other")
	moved := strings.Replace(string(other), `"payment_id":"p-other"`, `"payment_id":"p-2"`, 1)
	fx.worker.handle(ctx, []byte(moved), "")
	calls := fx.fake.recorded()
	if len(calls) != 1 || calls[0].results[0].FailureCode != "card_unreadable" {
		t.Fatalf("%+v", calls)
	}
	if !strings.Contains(fx.logs.String(), `"reason":"malformed"`) && !strings.Contains(fx.logs.String(), "undecodable") {
		t.Fatalf("logs: %s", fx.logs)
	}
}

func TestWorkerRetriesAFailingHandlerAndDropsFinalRefusals(t *testing.T) {
	fails := atomic.Int64{}
	fx := newWorkerFixture(t, func(req *Request, card *Card) (*Outcome, error) {
		if fails.Add(1) <= 2 {
			return nil, errors.New("provider timeout")
		}
		return approveCard(req, card)
	})
	fx.fake.answer = func(int, []Result) error { return status.Error(codes.FailedPrecondition, "conflict") }
	if !fx.worker.handle(context.Background(), fx.request("r-1", "p-1"), "") {
		t.Fatal("not handled")
	}
	if fx.charges.Load() != 3 {
		t.Fatalf("handler called %d times", fx.charges.Load())
	}
	if !strings.Contains(fx.logs.String(), `"disposition":"CONFLICT"`) {
		t.Fatalf("the refusal was not logged: %s", fx.logs)
	}
}

func TestWorkerWaitsForPayrailUntilStopped(t *testing.T) {
	fx := newWorkerFixture(t, approveCard)
	fx.fake.answer = func(int, []Result) error { return status.Error(codes.Unavailable, "down") }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- fx.worker.handle(ctx, fx.request("r-1", "p-1"), "") }()
	deadline := time.Now().Add(2 * time.Second)
	for !fx.worker.Waiting() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !fx.worker.Waiting() {
		t.Fatal("the worker does not say it waits")
	}
	cancel()
	if <-done {
		t.Fatal("a request never reported counts as handled (its offset would be committed)")
	}
}

func TestRequestIDFromHeaders(t *testing.T) {
	cases := map[string]string{"abc-1.2:3_x": "abc-1.2:3_x", "-abc": "", "a b": "", strings.Repeat("a", 65): "", "": ""}
	for value, want := range cases {
		got := requestIDFrom([]kgo.RecordHeader{{Key: "other", Value: []byte("x")}, {Key: RequestIDKey, Value: []byte(value)}})
		if got != want {
			t.Fatalf("%q: %q", value, got)
		}
	}
}

func TestAnsweredCacheForgetsTheOldest(t *testing.T) {
	c := newAnsweredCache(2)
	c.put("a", Result{EventID: "1"})
	c.put("b", Result{EventID: "2"})
	c.put("c", Result{EventID: "3"})
	if _, ok := c.get("a"); ok {
		t.Fatal("the oldest was kept")
	}
	if r, ok := c.get("c"); !ok || r.EventID != "3" {
		t.Fatal("the newest was lost")
	}
}

func TestLogRedaction(t *testing.T) {
	cases := map[string]string{
		"card 4242424242424242 declined":               "card [redacted-pan ...4242] declined",
		"4242 4242 4242 4242":                          "[redacted-pan ...4242]",
		"4242-4242-4242-4242.":                         "[redacted-pan ...4242].",
		"payment 6f1c2a4e-0b1d-4c55-9a2e-3f4b5c6d7e8f": "payment 6f1c2a4e-0b1d-4c55-9a2e-3f4b5c6d7e8f",
		"abcdef12-3456-7890-1234-567890abcdef":         "abcdef12-3456-7890-1234-567890abcdef",
		"424242******4242 and 12345678901":             "424242******4242 and 12345678901",
		"t=1700000000":                                 "t=1700000000",
	}
	for in, want := range cases {
		if got := RedactCardNumbers(in); got != want {
			t.Fatalf("%q -> %q, want %q", in, got, want)
		}
	}
	var out bytes.Buffer
	slog.New(NewLogHandler(&out, slog.LevelInfo, "svc")).Error("charge failed: 4000000000000002 refused", "detail", "pan 4000 0000 0000 0002")
	line := out.String()
	if strings.Contains(line, "0000000000000002") || strings.Contains(line, "0000 0000 0002") ||
		!strings.Contains(line, `"level":"error"`) || !strings.Contains(line, `"service":"svc"`) || !strings.Contains(line, `"ts":"`) {
		t.Fatalf("log line: %s", line)
	}
	if ParseLogLevel("warning") != slog.LevelWarn || ParseLogLevel("nonsense") != slog.LevelInfo {
		t.Fatal("log levels")
	}
}
