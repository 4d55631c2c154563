package payrail

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	callbacksv1 "github.com/payrail/payrail/generated/go/payrail/callbacks/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakePayrail is an in-process CallbackService over a real gRPC connection: it checks
// every call's signature with the gateway's secret and decodes its payload like
// payrail does, records what arrived, and answers what the test scripts.
type fakePayrail struct {
	callbacksv1.UnimplementedCallbackServiceServer
	t      *testing.T
	format Format
	secret Secret

	mu    sync.Mutex
	calls []fakeCall
	// answer decides the status of call n (0-based); nil: OK.
	answer func(n int, results []Result) error
}

type fakeCall struct {
	batch      bool
	results    []Result
	requestID  string
	requestIDs []string
}

func (f *fakePayrail) check(ctx context.Context, payload []byte, batch bool) ([]Result, string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	header := strings.Join(md.Get(SignatureHeader), "")
	if err := Verify(payload, header, []Secret{f.secret}, time.Now().Unix()); err != nil {
		return nil, "", status.Error(codes.Unauthenticated, "callback signature, timestamp or gateway not accepted")
	}
	var results []Result
	if batch {
		var err error
		if results, err = f.format.DecodeResults(payload); err != nil {
			return nil, "", status.Error(codes.Unauthenticated, "not a batch")
		}
	} else {
		r, err := f.format.DecodeResult(payload)
		if err != nil {
			return nil, "", status.Error(codes.Unauthenticated, "not a result")
		}
		results = []Result{*r}
	}
	return results, strings.Join(md.Get(RequestIDKey), ""), nil
}

func (f *fakePayrail) record(call fakeCall) error {
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, call)
	answer := f.answer
	f.mu.Unlock()
	if answer != nil {
		return answer(n, call.results)
	}
	return nil
}

func (f *fakePayrail) ReportResult(ctx context.Context, req *callbacksv1.ReportResultRequest) (*callbacksv1.ReportResultResponse, error) {
	results, requestID, err := f.check(ctx, req.GetPayload(), false)
	if err != nil {
		return nil, err
	}
	if err := f.record(fakeCall{results: results, requestID: requestID}); err != nil {
		return nil, err
	}
	return &callbacksv1.ReportResultResponse{PaymentId: results[0].PaymentID}, nil
}

func (f *fakePayrail) ReportResults(ctx context.Context, req *callbacksv1.ReportResultsRequest) (*callbacksv1.ReportResultsResponse, error) {
	results, requestID, err := f.check(ctx, req.GetPayload(), true)
	if err != nil {
		return nil, err
	}
	if err := f.record(fakeCall{batch: true, results: results, requestID: requestID, requestIDs: req.GetRequestIds()}); err != nil {
		return nil, err
	}
	reply := &callbacksv1.ReportResultsResponse{}
	for _, r := range results {
		reply.Results = append(reply.Results, &callbacksv1.ReportedResult{
			EventId: r.EventID, PaymentId: r.PaymentID, Disposition: callbacksv1.ResultDisposition_RESULT_DISPOSITION_APPLIED,
		})
	}
	return reply, nil
}

func (f *fakePayrail) recorded() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

// startPayrail serves a fakePayrail and returns a client for it with short backoffs.
func startPayrail(t *testing.T, format Format) (*fakePayrail, *CallbackClient) {
	t.Helper()
	secret := testSecret(t, 9)
	fake := &fakePayrail{t: t, format: format, secret: secret}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	callbacksv1.RegisterCallbackServiceServer(server, fake)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	conn, err := Dial(listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client, err := NewCallbackClient(conn, "gw-test", format, []Secret{secret}, ClientOptions{
		CallTimeout: 2 * time.Second, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return fake, client
}

func result(i int) Result {
	return Result{EventID: "evt-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), PaymentID: "p-1",
		Outcome: Approved, GatewayReference: "ref", OccurTime: 1_700_000_000}
}

func TestReportResultRetriesTransientFailuresSignedAfresh(t *testing.T) {
	fake, client := startPayrail(t, Protobuf)
	fake.answer = func(n int, _ []Result) error {
		if n < 3 {
			return status.Error([]codes.Code{codes.Unavailable, codes.ResourceExhausted, codes.Aborted}[n], "busy")
		}
		return nil
	}
	reported, err := client.ReportResult(context.Background(), result(0), "req-1")
	if err != nil || reported.Disposition != DispositionApplied {
		t.Fatalf("%+v, %v", reported, err)
	}
	calls := fake.recorded()
	if len(calls) != 4 || calls[3].requestID != "req-1" || calls[3].results[0] != result(0) {
		t.Fatalf("calls: %+v", calls)
	}
	if client.Waiting() {
		t.Fatal("still waiting after success")
	}
}

func TestReportResultStopsWhenTheContextEnds(t *testing.T) {
	fake, client := startPayrail(t, JSON)
	fake.answer = func(int, []Result) error { return status.Error(codes.Unavailable, "down") }
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := client.ReportResult(ctx, result(0), "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if len(fake.recorded()) < 2 {
		t.Fatal("not retried")
	}
}

func TestReportResultRefusals(t *testing.T) {
	fake, client := startPayrail(t, SOAP)
	for code, want := range map[codes.Code]Disposition{codes.NotFound: DispositionNotFound, codes.FailedPrecondition: DispositionConflict} {
		fake.answer = func(int, []Result) error { return status.Error(code, "no") }
		reported, err := client.ReportResult(context.Background(), result(0), "")
		if err != nil || reported.Disposition != want || !reported.Final() {
			t.Fatalf("%v: %+v, %v", code, reported, err)
		}
	}
	// UNKNOWN/INTERNAL: a bounded number of tries, then the error.
	before := len(fake.recorded())
	fake.answer = func(int, []Result) error { return status.Error(codes.Internal, "oops") }
	_, err := client.ReportResult(context.Background(), result(0), "")
	if status.Code(err) != codes.Internal || len(fake.recorded())-before != 5 {
		t.Fatalf("err = %v after %d tries", err, len(fake.recorded())-before)
	}
	// UNAUTHENTICATED is not retried.
	before = len(fake.recorded())
	fake.answer = func(int, []Result) error { return status.Error(codes.Unauthenticated, "no") }
	_, err = client.ReportResult(context.Background(), result(0), "")
	if status.Code(err) != codes.Unauthenticated || len(fake.recorded())-before != 1 {
		t.Fatalf("err = %v", err)
	}
}

func TestReportResultsHalvesAnOversizedBatch(t *testing.T) {
	fake, client := startPayrail(t, JSON)
	results := make([]Result, 400)
	ids := make([]string, 400)
	for i := range results {
		results[i] = result(i)
		results[i].GatewayReference = strings.Repeat("😀", GatewayReferenceMaxChars)
		results[i].Outcome = Declined
		results[i].FailureCode = "card_declined"
		results[i].FailureMessage = strings.Repeat("😀", FailureMessageMaxChars)
	}
	ids[1] = "req-b"
	reported, err := client.ReportResults(context.Background(), results, ids)
	if err != nil || len(reported) != 400 {
		t.Fatalf("%d, %v", len(reported), err)
	}
	calls := fake.recorded()
	if len(calls) != 2 || len(calls[0].results) != 200 || calls[1].results[199] != results[399] {
		t.Fatalf("%d calls", len(calls))
	}
	// The first call carries the request ids, the first non-empty one as metadata; the
	// second has none.
	if calls[0].requestID != "req-b" || len(calls[0].requestIDs) != 200 || calls[0].requestIDs[1] != "req-b" || calls[1].requestIDs != nil {
		t.Fatalf("request ids: %+v", calls[0].requestIDs)
	}
	for i, r := range reported {
		if r.EventID != results[i].EventID || r.Disposition != DispositionApplied {
			t.Fatalf("reply %d: %+v", i, r)
		}
	}
}

func TestBatcherGroupsResultsReadyTogether(t *testing.T) {
	fake, client := startPayrail(t, Protobuf)
	batcher, err := NewResultBatcher(client, BatcherOptions{Linger: 50 * time.Millisecond, BatchMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer batcher.Close()
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reported, err := batcher.Submit(context.Background(), result(i), "")
			if err == nil && reported.EventID != result(i).EventID {
				err = errors.New("another result's answer")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	sizes := map[int]int{}
	for _, c := range fake.recorded() {
		sizes[len(c.results)]++
		if len(c.results) > 1 && !c.batch {
			t.Fatal("several results in a single call")
		}
	}
	// Six results at once, at most four per call: a full batch of 4 and the rest (2).
	if sizes[4] != 1 || sizes[2] != 1 {
		t.Fatalf("batch sizes %v", sizes)
	}
}

func TestBatcherFallsBackToOneByOne(t *testing.T) {
	for _, code := range []codes.Code{codes.Internal, codes.Unimplemented} {
		fake, client := startPayrail(t, JSON)
		fake.answer = func(n int, results []Result) error {
			if len(results) > 1 {
				return status.Error(code, "batch failed")
			}
			if results[0].EventID == result(1).EventID {
				return status.Error(codes.FailedPrecondition, "conflict")
			}
			return nil
		}
		batcher, _ := NewResultBatcher(client, BatcherOptions{Linger: 50 * time.Millisecond, BatchMax: 10})
		var wg sync.WaitGroup
		got := make([]Reported, 3)
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], _ = batcher.Submit(context.Background(), result(i), "")
			}()
		}
		wg.Wait()
		// One bad result does not hold the others back.
		if got[0].Disposition != DispositionApplied || got[1].Disposition != DispositionConflict || got[2].Disposition != DispositionApplied {
			t.Fatalf("%v: %+v", code, got)
		}
		singles := 0
		for _, c := range fake.recorded() {
			if !c.batch {
				singles++
			}
		}
		if singles != 3 {
			t.Fatalf("%v: %d single calls", code, singles)
		}
		// UNIMPLEMENTED: no batches any more.
		if code == codes.Unimplemented {
			before := len(fake.recorded())
			if _, err := batcher.Submit(context.Background(), result(4), ""); err != nil || fake.recorded()[before].batch {
				t.Fatal("batched again after UNIMPLEMENTED")
			}
		}
		batcher.Close()
	}
}

func TestBatcherOptionsAreBounded(t *testing.T) {
	_, client := startPayrail(t, JSON)
	for _, opts := range []BatcherOptions{{BatchMax: BatchResultsMax + 1}, {BatchMax: -1}, {Linger: 2 * time.Second}} {
		if _, err := NewResultBatcher(client, opts); err == nil {
			t.Fatalf("%+v accepted", opts)
		}
	}
}
