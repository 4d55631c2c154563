package payrail

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// requestIDFrom reads payrail's request id from the record headers; an id of another
// shape is ignored (it would reach log lines and metadata).
func requestIDFrom(headers []kgo.RecordHeader) string {
	for _, h := range headers {
		if h.Key != RequestIDKey {
			continue
		}
		v := h.Value
		if len(v) == 0 || len(v) > 64 || !isAlnum(v[0]) {
			return ""
		}
		for _, c := range v[1:] {
			if !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
				return ""
			}
		}
		return string(v)
	}
	return ""
}

func isAlnum(c byte) bool { return isDigit(c) || isUpper(c) || c >= 'a' && c <= 'z' }

// ------------------------------------------------------------------ bookkeeping

// answeredCache remembers the latest AnsweredMax decisions by payment id; the oldest
// is forgotten first.
type answeredCache struct {
	mu    sync.Mutex
	max   int
	byID  map[string]Result
	order []string // FIFO of payment ids, as a ring once full
	next  int
}

func newAnsweredCache(max int) *answeredCache {
	return &answeredCache{max: max, byID: make(map[string]Result)}
}

func (c *answeredCache) get(paymentID string) (Result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.byID[paymentID]
	return r, ok
}

func (c *answeredCache) put(paymentID string, r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byID[paymentID]; ok {
		c.byID[paymentID] = r
		return
	}
	c.byID[paymentID] = r
	if len(c.order) < c.max {
		c.order = append(c.order, paymentID)
		return
	}
	delete(c.byID, c.order[c.next])
	c.order[c.next] = paymentID
	c.next = (c.next + 1) % c.max
}

type paymentLock struct {
	mu    sync.Mutex
	users int
}

// paymentLocks serialises work on one payment id; entries live while used.
type paymentLocks struct {
	mu   sync.Mutex
	held map[string]*paymentLock
}

func (p *paymentLocks) lock(id string) (unlock func()) {
	p.mu.Lock()
	l := p.held[id]
	if l == nil {
		l = &paymentLock{}
		p.held[id] = l
	}
	l.users++
	p.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		p.mu.Lock()
		l.users--
		if l.users == 0 {
			delete(p.held, id)
		}
		p.mu.Unlock()
	}
}
