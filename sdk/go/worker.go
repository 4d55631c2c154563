package payrail

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/status"
)

// WorkerConfig configures a Worker; zero values take the documented defaults.
type WorkerConfig struct {
	// GatewayID is the registered gateway id: the worker consumes
	// gateway.<GatewayID>.requests in consumer group <GatewayID>.
	GatewayID string
	// Brokers are Kafka bootstrap addresses ("127.0.0.1:9092").
	Brokers []string
	// Format is the gateway's registered wire format.
	Format Format
	// PrivateKey opens the sealed cards (its public half is registered with payrail).
	PrivateKey *ecdh.PrivateKey
	// Client reports the results.
	Client *CallbackClient
	// Handler decides on each payment.
	Handler Handler
	// Batcher options: Linger (default 5 ms) and BatchMax (default 100; 1 reports
	// every result alone with ReportResult).
	Batcher BatcherOptions
	// AnsweredMax bounds the decisions remembered to answer redeliveries and
	// re-dispatches without charging again (default 10 000 payments, oldest dropped).
	AnsweredMax int
	// PollRecordsMax bounds the records handled at once (default 50).
	PollRecordsMax int
	// BackoffMax caps the jittered pause after a failure (default 10 s).
	BackoffMax time.Duration
	// ShutdownGrace is how long in-flight requests may take to finish reporting once
	// Run's context ends (default 5 s); then they are abandoned uncommitted.
	ShutdownGrace time.Duration
	// KafkaOptions are extra franz-go options (SASL, TLS, client id...).
	KafkaOptions []kgo.Opt
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Worker runs a gateway: it consumes gateway.<id>.requests in consumer group <id>,
// decodes each request in the gateway's format, opens the sealed card, calls the
// Handler and reports its result, signed, through a ResultBatcher (results ready
// within Linger of each other share one ReportResults call). Offsets are committed
// only after every result of the records polled was accepted (or the handler chose not
// to answer, or payrail refused a result for good), so a crash redelivers the
// requests; results carry event_id "<request_id>/result", so payrail applies a
// redelivered result once.
//
// Nothing but the end of Run's context stops it: while payrail or Kafka is unreachable
// it waits and retries with capped, jittered backoff for as long as it takes (Waiting
// reports true meanwhile), never charging a payment twice in this process: a request
// for a payment already decided here (a redelivery, or a re-dispatch with a later
// attempt) re-sends the same result. A result payrail refuses for good (unknown
// payment, conflicting outcome, or a refusal such as UNAUTHENTICATED) is logged and
// dropped; a result it keeps failing with UNKNOWN/INTERNAL is logged and dropped after
// a bounded number of tries (payrail's janitor then re-dispatches the payment).
//
// Tracing: a request's x-request-id Kafka header is put in the Handler's context
// (RequestIDFromContext), on the worker's log lines, and sent with the result
// (x-request-id metadata, and ReportResultsRequest.request_ids in a batch).
type Worker struct {
	cfg     WorkerConfig
	log     *slog.Logger
	batcher *ResultBatcher

	answered *answeredCache
	locks    paymentLocks

	// failures counts consecutive failures of Kafka or of the handler; the client
	// counts payrail's.
	failures atomic.Int64
	// handlerRetrying counts requests whose handler failed and waits to be called again.
	handlerRetrying atomic.Int64
	consuming       atomic.Bool
}

// NewWorker checks cfg and returns a worker; Run starts it.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.GatewayID == "" || len(cfg.Brokers) == 0 || cfg.Format == nil || cfg.PrivateKey == nil ||
		cfg.Client == nil || cfg.Handler == nil {
		return nil, errors.New("payrail: a worker needs GatewayID, Brokers, Format, PrivateKey, Client and Handler")
	}
	if cfg.AnsweredMax <= 0 {
		cfg.AnsweredMax = 10_000
	}
	if cfg.PollRecordsMax <= 0 {
		cfg.PollRecordsMax = 50
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Batcher.Logger == nil {
		cfg.Batcher.Logger = cfg.Logger
	}
	batcher, err := NewResultBatcher(cfg.Client, cfg.Batcher)
	if err != nil {
		return nil, err
	}
	return &Worker{
		cfg:      cfg,
		log:      cfg.Logger,
		batcher:  batcher,
		answered: newAnsweredCache(cfg.AnsweredMax),
		locks:    paymentLocks{held: map[string]*paymentLock{}},
	}, nil
}

// Topic is the topic the worker consumes.
func (w *Worker) Topic() string { return "gateway." + w.cfg.GatewayID + ".requests" }

// Waiting reports whether the worker waits for payrail, Kafka or the handler to
// recover (for health checks).
func (w *Worker) Waiting() bool {
	return w.failures.Load() > 0 || w.handlerRetrying.Load() > 0 || w.cfg.Client.Waiting()
}

// Consuming reports whether Run has started consuming.
func (w *Worker) Consuming() bool { return w.consuming.Load() }

const (
	pollWait = time.Second
	// pingInterval: how often an idle worker checks that Kafka answers (health).
	pingInterval  = 5 * time.Second
	commitTimeout = 10 * time.Second
	closeTimeout  = 5 * time.Second
)

// Run (once per Worker) consumes until ctx ends, then lets in-flight requests finish within
// ShutdownGrace, commits what was handled, leaves the group and returns nil. It
// returns an error only when the Kafka client cannot be created.
func (w *Worker) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(w.cfg.Brokers...),
		kgo.ConsumerGroup(w.cfg.GatewayID),
		kgo.ConsumeTopics(w.Topic()),
		kgo.DisableAutoCommit(),
		// Rebalances wait until the polled records are handled and committed, so an
		// offset is never committed for a partition this worker no longer owns.
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500 * time.Millisecond),
		// As payrail's own consumers: a crashed worker's partitions move to another
		// member (or to its restart) within about 10 s, not franz-go's default 45 s.
		kgo.SessionTimeout(10 * time.Second),
		kgo.HeartbeatInterval(3 * time.Second),
	}, w.cfg.KafkaOptions...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("payrail: kafka client: %w", err)
	}
	// Requests in flight finish within the grace period after ctx ends.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	stopAfterGrace := context.AfterFunc(ctx, func() {
		time.AfterFunc(w.cfg.ShutdownGrace, stopWork)
	})
	defer func() {
		stopAfterGrace()
		stopWork()
		w.batcher.Close()
		w.consuming.Store(false)
		closed := make(chan struct{})
		go func() {
			cl.CloseAllowingRebalance()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(closeTimeout):
			w.log.Warn("kafka client not closed in time")
		}
	}()
	w.consuming.Store(true)
	w.log.Info("consuming", "topic", w.Topic(), "group", w.cfg.GatewayID)
	lastPing := time.Now()
	for ctx.Err() == nil {
		pollCtx, cancel := context.WithTimeout(ctx, pollWait)
		fetches := cl.PollRecords(pollCtx, w.cfg.PollRecordsMax)
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		var fetchErr error
		fetches.EachError(func(topic string, partition int32, err error) {
			if fetchErr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = err
			}
		})
		failed := fetchErr != nil
		if failed {
			w.failed(ctx, "fetch failed", fetchErr)
		}
		records := fetches.Records()
		if len(records) == 0 {
			cl.AllowRebalance()
			if !failed && time.Since(lastPing) > pingInterval {
				lastPing = time.Now()
				pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := cl.Ping(pingCtx)
				cancel()
				if err != nil && ctx.Err() == nil {
					w.failed(ctx, "kafka not reachable", err)
					continue
				}
			}
			if !failed {
				w.recovered()
			}
			continue
		}
		done := w.handleAll(work, records)
		w.commit(cl, records, done)
		cl.AllowRebalance()
		if !failed && work.Err() == nil {
			w.recovered()
		}
	}
	return nil
}

func (w *Worker) failed(ctx context.Context, what string, err error) {
	n := w.failures.Add(1)
	if n == 1 || n%10 == 0 {
		w.log.Warn(what, "error", describe(err), "failures", n)
	}
	_ = sleepBackoff(ctx, int(n), 200*time.Millisecond, w.cfg.BackoffMax)
}

func (w *Worker) recovered() {
	if n := w.failures.Swap(0); n > 0 {
		w.log.Info("worker recovered", "failures", n)
	}
}

// describe names an infrastructure error (Kafka, network, gRPC) for a log line: the
// status code of a gRPC error (its message is payrail's), the text of the others
// (they carry addresses, never payment data), bounded.
func describe(err error) string {
	if s, ok := status.FromError(err); ok {
		return "grpc " + s.Code().String()
	}
	text := err.Error()
	if len(text) > 200 {
		text = text[:200]
	}
	return text
}

// handleAll handles the records concurrently (their results can then share a call)
// and says which were handled.
func (w *Worker) handleAll(ctx context.Context, records []*kgo.Record) []bool {
	done := make([]bool, len(records))
	var wg sync.WaitGroup
	for i, rec := range records {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done[i] = w.handle(ctx, rec.Value, requestIDFrom(rec.Headers))
		}()
	}
	wg.Wait()
	return done
}

// commit commits, per partition, the records up to the first one not handled (only
// a shutdown leaves records unhandled: they are read again by the next consumer).
func (w *Worker) commit(cl *kgo.Client, records []*kgo.Record, done []bool) {
	type tp struct {
		topic     string
		partition int32
	}
	stopped := map[tp]bool{}
	last := map[tp]*kgo.Record{}
	for i, rec := range records { // in offset order per partition
		key := tp{rec.Topic, rec.Partition}
		if stopped[key] {
			continue
		}
		if !done[i] {
			stopped[key] = true
			continue
		}
		last[key] = rec
	}
	if len(last) == 0 {
		return
	}
	toCommit := make([]*kgo.Record, 0, len(last))
	for _, rec := range last {
		toCommit = append(toCommit, rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if err := cl.CommitRecords(ctx, toCommit...); err != nil {
		// The next commit covers these offsets; if a rebalance took the partition, its
		// new owner reads the records again and payrail de-duplicates the results.
		w.log.Warn("commit failed", "error", describe(err), "partitions", len(toCommit))
	}
}

// handle handles one request; false when ctx ended before it was.
func (w *Worker) handle(ctx context.Context, raw []byte, requestID string) bool {
	log := w.log
	if requestID != "" {
		log = log.With("request_id", requestID)
		ctx = withRequestID(ctx, requestID)
	}
	req, err := w.cfg.Format.DecodeRequest(raw)
	if err != nil {
		var fe *FormatError
		reason := "unknown"
		if errors.As(err, &fe) {
			reason = string(fe.Reason)
		}
		log.Error("undecodable request dropped", "reason", reason)
		return true
	}
	log = log.With("payment_id", req.PaymentID)
	result, answer, ok := w.decide(ctx, log, req)
	if !ok {
		return false
	}
	if !answer {
		log.Info("request not answered", "attempt", req.Attempt)
		return true
	}
	return w.report(ctx, log, req, result, requestID)
}

// decide returns the payment's result: the one decided before in this process, or
// the handler's (retried after a backoff while it fails). answer is false when the
// handler chose not to answer; ok is false when ctx ended first.
func (w *Worker) decide(ctx context.Context, log *slog.Logger, req *Request) (result Result, answer, ok bool) {
	// One decision per payment at a time: a redelivery and a re-dispatch of the same
	// payment in one poll must not both reach the handler.
	unlock := w.locks.lock(req.PaymentID)
	defer unlock()
	if previous, found := w.answered.get(req.PaymentID); found {
		log.Info("payment answered before; reporting the same result", "attempt", req.Attempt)
		return previous, true, true
	}
	var card *Card
	if req.SealedCard != nil {
		opened, err := OpenCard(w.cfg.PrivateKey, req.SealedCard, req.PaymentID)
		if err != nil {
			log.Error("card could not be unsealed")
			declined, _ := ResultFor(req, Decline("card_unreadable", "the card could not be opened by the gateway"), time.Now())
			w.answered.put(req.PaymentID, declined)
			return declined, true, true
		}
		card = opened
	}
	for attempt := 1; ; attempt++ {
		outcome, err := w.cfg.Handler.Charge(ctx, req, card)
		if err == nil && outcome == nil {
			return Result{}, false, true
		}
		if err == nil {
			result, err = ResultFor(req, outcome, time.Now())
			if err == nil {
				w.answered.put(req.PaymentID, result)
				return result, true, true
			}
			err = fmt.Errorf("handler returned an invalid outcome: %w", err)
		}
		if ctx.Err() != nil {
			return Result{}, false, false
		}
		if attempt == 1 || attempt%10 == 0 {
			// The handler's error text is the gateway author's: logged (redacted) as is.
			log.Error("handler failed; retrying", "error", err.Error(), "attempt", attempt)
		}
		w.handlerRetrying.Add(1)
		waitErr := sleepBackoff(ctx, attempt, 200*time.Millisecond, w.cfg.BackoffMax)
		w.handlerRetrying.Add(-1)
		if waitErr != nil {
			return Result{}, false, false
		}
	}
}

// report submits the result until payrail answers it or refuses it for good; false
// when ctx ended first.
func (w *Worker) report(ctx context.Context, log *slog.Logger, req *Request, result Result, requestID string) bool {
	for attempt := 1; ; attempt++ {
		reported, err := w.batcher.Submit(ctx, result, requestID)
		if err == nil {
			if reported.Final() {
				// payrail holds another final outcome, or never gave us this payment.
				log.Error("result not accepted", "disposition", reported.Disposition.String())
				return true
			}
			log.Info("result reported", "attempt", req.Attempt, "outcome", string(result.Outcome),
				"failure_code", result.FailureCode, "duplicate", reported.Disposition == DispositionDuplicate)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if _, isStatus := status.FromError(err); isStatus {
			// Transient codes were retried by the client until ctx ended; what is left is
			// a refusal for good, or UNKNOWN/INTERNAL after its bounded tries.
			log.Error("result not accepted", "code", status.Code(err).String())
			return true
		}
		// Anything else (a batch reply of the wrong shape, the batcher closing): again.
		if attempt == 1 || attempt%10 == 0 {
			log.Warn("result not reported; retrying", "error", describe(err), "attempt", attempt)
		}
		if sleepBackoff(ctx, attempt, 200*time.Millisecond, w.cfg.BackoffMax) != nil {
			return false
		}
	}
}
