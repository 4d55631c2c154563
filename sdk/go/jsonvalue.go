package payrail

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A strict JSON reader with the semantics of Python's json module as the Python SDK
// uses it: UTF-8 only, no BOM, duplicate keys refused (optionally), NaN and Infinity
// refused, integers told apart from other numbers, raw control characters in strings
// refused, lone UTF-16 surrogates from \u escapes kept (as bytes that are not UTF-8,
// so the field rules refuse them as invalid_field exactly where Python's would).
// encoding/json cannot do this: it replaces lone surrogates silently and does not
// report duplicate keys.

type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonInt
	jsonFloat
	jsonString
	jsonArray
	jsonObject
)

// jsonDepthMax bounds nesting (payrail's messages have depth 3): a deeper document is
// malformed instead of a deep recursion.
const jsonDepthMax = 64

// jsonIntDigitsMax: Python refuses to convert longer integer literals (its
// int_max_str_digits default), which makes the document malformed there too.
const jsonIntDigitsMax = 4300

type jsonValue struct {
	kind    jsonKind
	boolean bool
	str     string
	integer int64
	// intFits is false for an integer literal outside int64: a valid JSON integer that
	// no field accepts (every range is within int64).
	intFits bool
	items   []*jsonValue
	members map[string]*jsonValue
}

type jsonParser struct {
	data        []byte
	pos         int
	depth       int
	allowDupKey bool
}

type jsonSyntaxError struct{}

func (jsonSyntaxError) Error() string { return "json syntax" }

// parseJSON parses one complete JSON document.
func parseJSON(data []byte, allowDuplicateKeys bool) (*jsonValue, error) {
	if !utf8.Valid(data) {
		return nil, jsonSyntaxError{}
	}
	p := &jsonParser{data: data, allowDupKey: allowDuplicateKeys}
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, jsonSyntaxError{}
	}
	return v, nil
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) literal(word string) bool {
	if len(p.data)-p.pos >= len(word) && string(p.data[p.pos:p.pos+len(word)]) == word {
		p.pos += len(word)
		return true
	}
	return false
}

func (p *jsonParser) value() (*jsonValue, error) {
	if p.pos >= len(p.data) {
		return nil, jsonSyntaxError{}
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.string()
		if err != nil {
			return nil, err
		}
		return &jsonValue{kind: jsonString, str: s}, nil
	case c == '-' || isDigit(c):
		return p.number()
	case p.literal("true"):
		return &jsonValue{kind: jsonBool, boolean: true}, nil
	case p.literal("false"):
		return &jsonValue{kind: jsonBool}, nil
	case p.literal("null"):
		return &jsonValue{kind: jsonNull}, nil
	}
	// NaN, Infinity and everything else.
	return nil, jsonSyntaxError{}
}

func (p *jsonParser) enter() error {
	p.depth++
	if p.depth > jsonDepthMax {
		return jsonSyntaxError{}
	}
	p.pos++
	p.skipSpace()
	return nil
}

func (p *jsonParser) object() (*jsonValue, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	v := &jsonValue{kind: jsonObject, members: map[string]*jsonValue{}}
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return v, nil
	}
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, jsonSyntaxError{}
		}
		key, err := p.string()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, jsonSyntaxError{}
		}
		p.pos++
		p.skipSpace()
		member, err := p.value()
		if err != nil {
			return nil, err
		}
		if _, dup := v.members[key]; dup && !p.allowDupKey {
			return nil, jsonSyntaxError{}
		}
		v.members[key] = member // the last one wins, as in Python, when allowed
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, jsonSyntaxError{}
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case '}':
			p.pos++
			p.depth--
			return v, nil
		default:
			return nil, jsonSyntaxError{}
		}
	}
}

func (p *jsonParser) array() (*jsonValue, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	v := &jsonValue{kind: jsonArray}
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return v, nil
	}
	for {
		item, err := p.value()
		if err != nil {
			return nil, err
		}
		v.items = append(v.items, item)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, jsonSyntaxError{}
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case ']':
			p.pos++
			p.depth--
			return v, nil
		default:
			return nil, jsonSyntaxError{}
		}
	}
}

// number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?
func (p *jsonParser) number() (*jsonValue, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
	}
	digitsStart := p.pos
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
	case p.pos < len(p.data) && isDigit(p.data[p.pos]):
		for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
			p.pos++
		}
	default:
		return nil, jsonSyntaxError{}
	}
	digits := p.pos - digitsStart
	isFloat := false
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if !p.digits() {
			return nil, jsonSyntaxError{}
		}
		isFloat = true
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if !p.digits() {
			return nil, jsonSyntaxError{}
		}
		isFloat = true
	}
	if isFloat {
		return &jsonValue{kind: jsonFloat}, nil
	}
	if digits > jsonIntDigitsMax {
		return nil, jsonSyntaxError{}
	}
	n, err := strconv.ParseInt(string(p.data[start:p.pos]), 10, 64)
	return &jsonValue{kind: jsonInt, integer: n, intFits: err == nil}, nil
}

func (p *jsonParser) digits() bool {
	start := p.pos
	for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
		p.pos++
	}
	return p.pos > start
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.data[p.pos:p.pos+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(n), true
}

// appendSurrogate keeps a lone surrogate as its 3-byte (invalid) UTF-8 form.
func appendSurrogate(out []byte, r rune) []byte {
	return append(out, 0xED, byte(0x80|(r>>6)&0x3F), byte(0x80|r&0x3F))
}

func (p *jsonParser) string() (string, error) {
	p.pos++ // the opening quote
	var out []byte
	for {
		if p.pos >= len(p.data) {
			return "", jsonSyntaxError{}
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(out), nil
		case c < 0x20:
			return "", jsonSyntaxError{}
		case c != '\\':
			out = append(out, c)
			p.pos++
			continue
		}
		p.pos++
		if p.pos >= len(p.data) {
			return "", jsonSyntaxError{}
		}
		esc := p.data[p.pos]
		p.pos++
		switch esc {
		case '"', '\\', '/':
			out = append(out, esc)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", jsonSyntaxError{}
			}
			if utf16.IsSurrogate(r) {
				if r < 0xDC00 && len(p.data)-p.pos >= 6 && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
					save := p.pos
					p.pos += 2
					low, ok := p.hex4()
					if ok && low >= 0xDC00 && low <= 0xDFFF {
						out = utf8.AppendRune(out, utf16.DecodeRune(r, low))
						continue
					}
					p.pos = save
				}
				out = appendSurrogate(out, r)
				continue
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", jsonSyntaxError{}
		}
	}
}

// ------------------------------------------------------------------- canonical writing

// jsonWriter writes payrail's canonical JSON: the caller emits keys in sorted order,
// no white space, non-ASCII as UTF-8, the escapes of Python's json.dumps with
// ensure_ascii=False (\" \\ \n \r \t \b \f, other controls as \u00xx).
type jsonWriter struct{ buf []byte }

func (w *jsonWriter) raw(s string) { w.buf = append(w.buf, s...) }

func (w *jsonWriter) str(s string) {
	w.buf = append(w.buf, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			w.buf = append(w.buf, '\\', '"')
		case '\\':
			w.buf = append(w.buf, '\\', '\\')
		case '\n':
			w.buf = append(w.buf, '\\', 'n')
		case '\r':
			w.buf = append(w.buf, '\\', 'r')
		case '\t':
			w.buf = append(w.buf, '\\', 't')
		case '\b':
			w.buf = append(w.buf, '\\', 'b')
		case '\f':
			w.buf = append(w.buf, '\\', 'f')
		default:
			if c < 0x20 {
				w.buf = append(w.buf, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xF])
			} else {
				w.buf = append(w.buf, c)
			}
		}
	}
	w.buf = append(w.buf, '"')
}

func (w *jsonWriter) key(k string) {
	if n := len(w.buf); n > 0 && w.buf[n-1] != '{' {
		w.buf = append(w.buf, ',')
	}
	w.str(k)
	w.buf = append(w.buf, ':')
}

func (w *jsonWriter) int(n int64) { w.buf = strconv.AppendInt(w.buf, n, 10) }
