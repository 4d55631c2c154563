package payrail

import (
	"io"
	"log/slog"
	"strings"
	"sync"
)

// NewLogHandler returns a slog handler that writes one JSON object per line, as
// payrail's services do ({"ts", "level", "service", "msg", ...}), with anything that
// looks like a card number (12 to 19 digits, optionally grouped by single spaces or
// dashes; UUIDs excepted) masked to its last four digits: a gateway opens card data,
// so a number in a message or an error must never reach its log.
func NewLogHandler(w io.Writer, level slog.Leveler, service string) slog.Handler {
	h := slog.NewJSONHandler(&redactingWriter{w: w}, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("ts", a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z"))
			case slog.LevelKey:
				return slog.String("level", strings.ToLower(a.Value.String()))
			}
			return a
		},
	})
	return h.WithAttrs([]slog.Attr{slog.String("service", service)})
}

// ParseLogLevel reads PAYRAIL_LOG_LEVEL's values (DEBUG, INFO, WARNING, ERROR; any
// case); anything else is INFO.
func ParseLogLevel(text string) slog.Level {
	switch strings.ToUpper(strings.TrimSpace(text)) {
	case "DEBUG":
		return slog.LevelDebug
	case "WARNING", "WARN":
		return slog.LevelWarn
	case "ERROR", "CRITICAL":
		return slog.LevelError
	}
	return slog.LevelInfo
}

type redactingWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// Write gets one whole log line per call from slog's JSON handler.
func (r *redactingWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.w, RedactCardNumbers(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func isWordByte(c byte) bool {
	return isDigit(c) || isUpper(c) || c >= 'a' && c <= 'z' || c == '_'
}

func isHexByte(c byte) bool { return isHexChar(c) }

// uuidAt reports whether a UUID (8-4-4-4-12 hex digits) starts at s[i] and ends at a
// word boundary.
func uuidAt(s string, i int) bool {
	if len(s)-i < 36 {
		return false
	}
	for k := 0; k < 36; k++ {
		c := s[i+k]
		if k == 8 || k == 13 || k == 18 || k == 23 {
			if c != '-' {
				return false
			}
		} else if !isHexByte(c) {
			return false
		}
	}
	return i+36 == len(s) || !isWordByte(s[i+36])
}

// RedactCardNumbers masks card-number-like digit runs in s, keeping the last four
// digits: "4242 4242 4242 4242" becomes "[redacted-pan ...4242]". Runs of more than 19
// digits are masked too: masking too much is harmless, too little is not.
func RedactCardNumbers(s string) string {
	var out strings.Builder
	last := 0
	for i := 0; i < len(s); {
		atBoundary := i == 0 || !isWordByte(s[i-1])
		if atBoundary && uuidAt(s, i) {
			i += 36
			continue
		}
		if !isDigit(s[i]) || i > 0 && isDigit(s[i-1]) {
			i++
			continue
		}
		// A run: digits, each group joined to the next by at most one space or dash.
		j, digits := i, 0
		var tail []byte
		for j < len(s) {
			if isDigit(s[j]) {
				digits++
				tail = append(tail, s[j])
				j++
				continue
			}
			if (s[j] == ' ' || s[j] == '-') && j+1 < len(s) && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		if digits >= CardNumberMinDigits {
			out.WriteString(s[last:i])
			out.WriteString("[redacted-pan ...")
			out.Write(tail[len(tail)-4:])
			out.WriteString("]")
			last = j
		}
		i = j
	}
	if last == 0 {
		return s
	}
	out.WriteString(s[last:])
	return out.String()
}
