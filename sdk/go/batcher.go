package payrail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// BatcherOptions tune a ResultBatcher; zero values take the documented defaults.
type BatcherOptions struct {
	// Linger is how long the first ready result waits for others to share its
	// ReportResults call (default 5 ms, at most 1 s; a negative value means 0).
	Linger time.Duration
	// BatchMax is the most results one call carries (default 100, 1 to
	// BatchResultsMax; 1: every result alone, with ReportResult).
	BatchMax int
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

type waitingResult struct {
	result    Result
	requestID string
	reply     chan batchReply // buffered: a sender never blocks on a gone submitter
}

type batchReply struct {
	reported Reported
	err      error
}

// ResultBatcher gathers the results submitted within Linger of the first one (at most
// BatchMax) into one ReportResults call, and hands each submitter its own result's
// answer. An error of the whole call is each submitter's error, except UNKNOWN and
// INTERNAL (payrail failed on something in the batch) and UNIMPLEMENTED (a payrail
// without batches; then for good): the batch's results are then reported one by one
// with ReportResult, so one bad result never holds the others back. Safe for
// concurrent use.
type ResultBatcher struct {
	client   *CallbackClient
	linger   time.Duration
	max      int
	log      *slog.Logger
	batching atomic.Bool

	mu      sync.Mutex
	pending []*waitingResult
	timer   *time.Timer

	// ctx is the senders' context: Close cancels what is still being sent.
	ctx    context.Context
	cancel context.CancelFunc
	sends  sync.WaitGroup
}

// NewResultBatcher returns a batcher that reports through client.
func NewResultBatcher(client *CallbackClient, opts BatcherOptions) (*ResultBatcher, error) {
	if opts.BatchMax == 0 {
		opts.BatchMax = 100
	}
	if opts.BatchMax < 1 || opts.BatchMax > BatchResultsMax {
		return nil, fmt.Errorf("payrail: BatchMax is 1 to %d", BatchResultsMax)
	}
	if opts.Linger == 0 {
		opts.Linger = 5 * time.Millisecond
	}
	if opts.Linger < 0 {
		opts.Linger = 0
	}
	if opts.Linger > time.Second {
		return nil, errors.New("payrail: Linger is at most 1 s")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &ResultBatcher{client: client, linger: opts.Linger, max: opts.BatchMax, log: opts.Logger, ctx: ctx, cancel: cancel}
	b.batching.Store(opts.BatchMax > 1)
	return b, nil
}

// Submit reports result (alone or in a batch) and returns what payrail did with it.
// requestID is payrail's request id of the request it answers ("" if none). When ctx
// ends first, Submit returns ctx.Err(); the result may still be reported.
func (b *ResultBatcher) Submit(ctx context.Context, result Result, requestID string) (Reported, error) {
	w := &waitingResult{result: result, requestID: requestID, reply: make(chan batchReply, 1)}
	if !b.batching.Load() {
		b.start([]*waitingResult{w})
	} else {
		b.mu.Lock()
		b.pending = append(b.pending, w)
		switch {
		case len(b.pending) >= b.max:
			b.flushLocked()
		case b.timer == nil:
			b.timer = time.AfterFunc(b.linger, b.flush)
		}
		b.mu.Unlock()
	}
	select {
	case r := <-w.reply:
		return r.reported, r.err
	case <-ctx.Done():
		return Reported{}, ctx.Err()
	}
}

// Close stops the batcher: results still waiting or being sent get an error (their
// requests are read again by whoever consumes them next). It waits for the senders.
func (b *ResultBatcher) Close() {
	b.mu.Lock()
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	b.cancel()
	fail(pending, context.Canceled)
	b.sends.Wait()
}

func (b *ResultBatcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *ResultBatcher) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	batch := b.pending
	b.pending = nil
	if len(batch) > 0 {
		b.start(batch)
	}
}

func (b *ResultBatcher) start(batch []*waitingResult) {
	if b.ctx.Err() != nil {
		fail(batch, context.Canceled)
		return
	}
	b.sends.Add(1)
	go func() {
		defer b.sends.Done()
		b.send(batch)
	}()
}

func fail(batch []*waitingResult, err error) {
	for _, w := range batch {
		w.reply <- batchReply{err: err}
	}
}

func (b *ResultBatcher) send(batch []*waitingResult) {
	if len(batch) == 1 {
		b.one(batch[0])
		return
	}
	results := make([]Result, len(batch))
	ids := make([]string, len(batch))
	for i, w := range batch {
		results[i], ids[i] = w.result, w.requestID
	}
	replies, err := b.client.ReportResults(b.ctx, results, ids)
	if err == nil {
		for i, w := range batch {
			w.reply <- batchReply{reported: replies[i]}
		}
		return
	}
	code := status.Code(err)
	switch {
	case code == codes.Unimplemented:
		b.log.Warn("payrail serves no batches; reporting results one by one")
		b.batching.Store(false)
	case code == codes.Unknown || code == codes.Internal:
		b.log.Warn("a batch failed at payrail; reporting its results one by one", "code", code.String(), "results", len(batch))
	default:
		// Results of calls that went through before the error still answer their own
		// submitters; the others get the error.
		for i, w := range batch {
			if i < len(replies) {
				w.reply <- batchReply{reported: replies[i]}
			} else {
				w.reply <- batchReply{err: err}
			}
		}
		return
	}
	var wg sync.WaitGroup
	for i, w := range batch {
		if i < len(replies) {
			w.reply <- batchReply{reported: replies[i]}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.one(w)
		}()
	}
	wg.Wait()
}

func (b *ResultBatcher) one(w *waitingResult) {
	reported, err := b.client.ReportResult(b.ctx, w.result, w.requestID)
	w.reply <- batchReply{reported: reported, err: err}
}
