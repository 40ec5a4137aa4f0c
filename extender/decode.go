package extender

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// decodeArgs parses the body of a filter or prioritize call. It accepts
// exactly what encoding/json accepts for an ExtenderArgs and yields the same
// value (FuzzPredicatesRequest compares the two), but reads the node names
// itself: with reflection, 5,000 names cost a few hundred microseconds and
// an allocation each, here they are substrings of one string. The pod and
// the node list are decoded by encoding/json, from their own bytes.
//
// names is a buffer for the node names (reused across calls).
func decodeArgs(data []byte, names []string) (extenderv1.ExtenderArgs, []string, error) {
	var args extenderv1.ExtenderArgs
	d := argsDecoder{data: data}
	d.skipSpace()
	if d.pos == len(d.data) {
		return args, names, d.errorf("unexpected end of JSON input")
	}
	if d.literal("null") {
		return args, names, d.finish()
	}
	if d.data[d.pos] != '{' {
		// encoding/json reports a type error here; so do we.
		if _, err := d.skipValue(0); err != nil {
			return args, names, err
		}
		if err := d.finish(); err != nil {
			return args, names, err
		}
		return args, names, errors.New("json: cannot unmarshal non-object into Go value of type v1.ExtenderArgs")
	}
	d.pos++
	// The first type error is kept and reported once the whole input is
	// known to be valid JSON, as encoding/json does.
	var typeErr error
	var podRaw, nodesRaw [][]byte
	namesSet, namesNil := false, true
	d.skipSpace()
	if d.peek() == '}' {
		d.pos++
		return args, names, d.finish()
	}
	for {
		d.skipSpace()
		key, err := d.key()
		if err != nil {
			return args, names, err
		}
		d.skipSpace()
		if d.peek() != ':' {
			return args, names, d.errorf("invalid character %s after object key", d.quoteChar())
		}
		d.pos++
		d.skipSpace()
		start := d.pos
		switch {
		case bytes.EqualFold(key, []byte("Pod")):
			if _, err := d.skipValue(1); err != nil {
				return args, names, err
			}
			podRaw = append(podRaw, d.data[start:d.pos])
		case bytes.EqualFold(key, []byte("Nodes")):
			if _, err := d.skipValue(1); err != nil {
				return args, names, err
			}
			nodesRaw = append(nodesRaw, d.data[start:d.pos])
		case bytes.EqualFold(key, []byte("NodeNames")):
			var isNull bool
			var terr error
			names, isNull, terr, err = d.nodeNames(names, namesNil)
			if err != nil {
				return args, names, err
			}
			if typeErr == nil {
				typeErr = terr
			}
			namesSet, namesNil = true, isNull
		default:
			if _, err := d.skipValue(1); err != nil {
				return args, names, err
			}
		}
		d.skipSpace()
		switch d.peek() {
		case ',':
			d.pos++
			continue
		case '}':
			d.pos++
		default:
			if d.pos == len(d.data) {
				return args, names, d.errorf("unexpected end of JSON input")
			}
			return args, names, d.errorf("invalid character %s after object key:value pair", d.quoteChar())
		}
		break
	}
	if err := d.finish(); err != nil {
		return args, names, err
	}
	// Repeated keys decode into the same value, in order, as encoding/json does.
	for _, raw := range podRaw {
		if err := json.Unmarshal(raw, &args.Pod); err != nil && typeErr == nil {
			typeErr = err
		}
	}
	for _, raw := range nodesRaw {
		if err := json.Unmarshal(raw, &args.Nodes); err != nil && typeErr == nil {
			typeErr = err
		}
	}
	if namesSet && !namesNil {
		args.NodeNames = &names
	}
	return args, names, typeErr
}

type argsDecoder struct {
	data []byte
	pos  int
	// text is data as a string, made when the first node name is read.
	text string
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

func (d *argsDecoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *argsDecoder) errorf(format string, a ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.pos, fmt.Sprintf(format, a...))
}

func (d *argsDecoder) quoteChar() string {
	if d.pos >= len(d.data) {
		return "end of input"
	}
	return fmt.Sprintf("%q", d.data[d.pos])
}

func (d *argsDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// finish accepts only trailing whitespace.
func (d *argsDecoder) finish() error {
	d.skipSpace()
	if d.pos != len(d.data) {
		return d.errorf("invalid character %s after top-level value", d.quoteChar())
	}
	return nil
}

func (d *argsDecoder) literal(word string) bool {
	if bytes.HasPrefix(d.data[d.pos:], []byte(word)) {
		d.pos += len(word)
		return true
	}
	return false
}

// key reads an object key and returns it unquoted.
func (d *argsDecoder) key() ([]byte, error) {
	if d.peek() != '"' {
		if d.pos == len(d.data) {
			return nil, d.errorf("unexpected end of JSON input")
		}
		return nil, d.errorf("invalid character %s looking for beginning of object key string", d.quoteChar())
	}
	start := d.pos
	escaped, err := d.skipString()
	if err != nil {
		return nil, err
	}
	raw := d.data[start:d.pos]
	if !escaped {
		return raw[1 : len(raw)-1], nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// skipString moves past a string token, validating it; escaped tells
// whether it holds a backslash or a byte that is not printable ASCII (which
// encoding/json may rewrite, e.g. invalid UTF-8 into U+FFFD).
func (d *argsDecoder) skipString() (escaped bool, err error) {
	d.pos++ // opening quote
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return escaped, nil
		case c == '\\':
			escaped = true
			d.pos++
			if d.pos == len(d.data) {
				return escaped, d.errorf("unexpected end of JSON input")
			}
			switch d.data[d.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos++
			case 'u':
				d.pos++
				for k := 0; k < 4; k++ {
					if d.pos == len(d.data) {
						return escaped, d.errorf("unexpected end of JSON input")
					}
					if !isHex(d.data[d.pos]) {
						return escaped, d.errorf("invalid character %s in \\u hexadecimal character escape", d.quoteChar())
					}
					d.pos++
				}
			default:
				return escaped, d.errorf("invalid character %s in string escape code", d.quoteChar())
			}
		case c < 0x20:
			return escaped, d.errorf("invalid character %s in string literal", d.quoteChar())
		default:
			if c >= 0x80 {
				escaped = true
			}
			d.pos++
		}
	}
	return escaped, d.errorf("unexpected end of JSON input")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// skipNumber moves past a number token, validating its grammar.
func (d *argsDecoder) skipNumber() error {
	if d.peek() == '-' {
		d.pos++
	}
	switch c := d.peek(); {
	case c == '0':
		d.pos++
	case c >= '1' && c <= '9':
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			d.pos++
		}
	default:
		if d.pos == len(d.data) {
			return d.errorf("unexpected end of JSON input")
		}
		return d.errorf("invalid character %s in numeric literal", d.quoteChar())
	}
	if d.peek() == '.' {
		d.pos++
		if !isDigit(d.peek()) {
			if d.pos == len(d.data) {
				return d.errorf("unexpected end of JSON input")
			}
			return d.errorf("invalid character %s after decimal point in numeric literal", d.quoteChar())
		}
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			d.pos++
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.pos++
		if c := d.peek(); c == '+' || c == '-' {
			d.pos++
		}
		if !isDigit(d.peek()) {
			if d.pos == len(d.data) {
				return d.errorf("unexpected end of JSON input")
			}
			return d.errorf("invalid character %s in exponent of numeric literal", d.quoteChar())
		}
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			d.pos++
		}
	}
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// frame is an open container while skipping: an object or an array, and
// whether no element was read yet.
type frame struct{ object, first bool }

// skipValue moves past any value, validating it. depth is the nesting of
// the enclosing containers (the top-level object is 1).
func (d *argsDecoder) skipValue(depth int) (kind byte, err error) {
	// An explicit stack instead of recursion: nesting is bounded only by maxDepth.
	var stack []frame
	for {
		d.skipSpace()
		if d.pos == len(d.data) {
			return 0, d.errorf("unexpected end of JSON input")
		}
		top := len(stack) - 1
		if top >= 0 {
			f := &stack[top]
			if f.first && (d.data[d.pos] == '}' && f.object || d.data[d.pos] == ']' && !f.object) {
				d.pos++
				stack = stack[:top]
				if len(stack) == 0 {
					return kind, nil
				}
				if err := d.afterElement(&stack); err != nil {
					return 0, err
				}
				if len(stack) == 0 {
					return kind, nil
				}
				continue
			}
			if f.object {
				if _, err := d.key(); err != nil {
					return 0, err
				}
				d.skipSpace()
				if d.peek() != ':' {
					if d.pos == len(d.data) {
						return 0, d.errorf("unexpected end of JSON input")
					}
					return 0, d.errorf("invalid character %s after object key", d.quoteChar())
				}
				d.pos++
				d.skipSpace()
				if d.pos == len(d.data) {
					return 0, d.errorf("unexpected end of JSON input")
				}
			}
			f.first = false
		}
		c := d.data[d.pos]
		if top < 0 {
			kind = c
		}
		switch {
		case c == '{' || c == '[':
			if depth+len(stack)+1 > maxDepth {
				return 0, d.errorf("exceeded max depth")
			}
			d.pos++
			stack = append(stack, frame{object: c == '{', first: true})
			continue
		case c == '"':
			if _, err := d.skipString(); err != nil {
				return 0, err
			}
		case c == '-' || isDigit(c):
			if err := d.skipNumber(); err != nil {
				return 0, err
			}
		case d.literal("true"), d.literal("false"), d.literal("null"):
		default:
			return 0, d.errorf("invalid character %s looking for beginning of value", d.quoteChar())
		}
		if len(stack) == 0 {
			return kind, nil
		}
		if err := d.afterElement(&stack); err != nil {
			return 0, err
		}
		if len(stack) == 0 {
			return kind, nil
		}
	}
}

// afterElement consumes the separator after an element of the innermost
// container, closing containers that end.
func (d *argsDecoder) afterElement(stack *[]frame) error {
	for len(*stack) > 0 {
		d.skipSpace()
		top := len(*stack) - 1
		closer := byte(']')
		if (*stack)[top].object {
			closer = '}'
		}
		switch d.peek() {
		case ',':
			d.pos++
			return nil
		case closer:
			d.pos++
			*stack = (*stack)[:top]
			continue
		}
		if d.pos == len(d.data) {
			return d.errorf("unexpected end of JSON input")
		}
		if closer == '}' {
			return d.errorf("invalid character %s after object key:value pair", d.quoteChar())
		}
		return d.errorf("invalid character %s after array element", d.quoteChar())
	}
	return nil
}

// nodeNames reads the NodeNames value into names the way encoding/json
// decodes into a *[]string: null leaves the pointer nil; an array is decoded
// element by element into the slice the previous occurrence left (a null
// element keeps what was there), then cut to its length; any other value is
// a type error. wasNil tells whether the pointer was nil before.
func (d *argsDecoder) nodeNames(names []string, wasNil bool) (out []string, isNull bool, typeErr, err error) {
	if d.literal("null") {
		return names[:0], true, nil, nil
	}
	if d.peek() != '[' {
		if _, err := d.skipValue(1); err != nil {
			return names, false, nil, err
		}
		// A type error: the request is refused, so what the slice holds does not matter.
		return names, wasNil, errors.New("json: cannot unmarshal non-array into Go struct field ExtenderArgs.NodeNames of type []string"), nil
	}
	if wasNil {
		// A nil pointer gets a fresh slice: nothing stale to keep.
		clear(names[:cap(names)])
	}
	// The body as one string, made once: a name without escapes is a
	// substring of it, which costs no allocation of its own.
	if d.text == "" {
		d.text = string(d.data)
	}
	d.pos++ // '[': at depth 2, far below maxDepth
	i := 0
	for {
		d.skipSpace()
		if d.peek() == ']' {
			d.pos++
			break
		}
		if i >= cap(names) {
			names = slices.Grow(names[:i], 1)
		}
		names = names[:i+1]
		switch c := d.peek(); {
		case c == '"':
			s := d.pos
			escaped, err := d.skipString()
			if err != nil {
				return names, false, nil, err
			}
			if escaped {
				var v string
				if err := json.Unmarshal(d.data[s:d.pos], &v); err != nil {
					return names, false, nil, err
				}
				names[i] = v
			} else {
				names[i] = d.text[s+1 : d.pos-1]
			}
		case d.literal("null"):
			// encoding/json leaves the element as it was.
		default:
			if _, err := d.skipValue(2); err != nil {
				return names, false, nil, err
			}
			if typeErr == nil {
				typeErr = errors.New("json: cannot unmarshal non-string into Go struct field ExtenderArgs.NodeNames of type string")
			}
		}
		i++
		d.skipSpace()
		switch d.peek() {
		case ',':
			d.pos++
			d.skipSpace()
			if d.peek() == ']' {
				return names, false, nil, d.errorf("invalid character ']' looking for beginning of value")
			}
		case ']':
		default:
			if d.pos == len(d.data) {
				return names, false, nil, d.errorf("unexpected end of JSON input")
			}
			return names, false, nil, d.errorf("invalid character %s after array element", d.quoteChar())
		}
	}
	if i == 0 {
		return make([]string, 0), false, typeErr, nil
	}
	return names[:i], false, typeErr, nil
}
