package extender

import (
	"strconv"
	"unicode/utf8"
)

// The responses are written by hand into a reused buffer: encoding/json
// would walk 5,000 names and a map of failures by reflection, and allocate
// the map in the first place. The output is what encoding/json produces for
// extenderv1.ExtenderFilterResult and HostPriorityList (field names as Go
// spells them, as the types carry no JSON tags); the tests decode it back
// with encoding/json.

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD
// and control characters are escaped, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				const hex = "0123456789abcdef"
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, "89"[r-'\u2028'])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// filterResponse collects a filter answer without a map: the failed nodes
// are kept as (node, reason) pairs and written as a JSON object.
type filterResponse struct {
	passed []string
	// failed and unresolvable are node/reason pairs.
	failed       []failedNode
	unresolvable []failedNode
	err          string
}

type failedNode struct{ node, reason string }

func (r *filterResponse) reset() {
	r.passed = r.passed[:0]
	r.failed = r.failed[:0]
	r.unresolvable = r.unresolvable[:0]
	r.err = ""
}

// appendTo writes the answer as an ExtenderFilterResult with NodeNames.
// A node named twice among the failures keeps its last reason, as a map would.
func (r *filterResponse) appendTo(b []byte) []byte {
	b = append(b, `{"Nodes":null,"NodeNames":`...)
	b = appendStrings(b, r.passed)
	b = append(b, `,"FailedNodes":`...)
	b = appendFailed(b, r.failed)
	b = append(b, `,"FailedAndUnresolvableNodes":`...)
	b = appendFailed(b, r.unresolvable)
	b = append(b, `,"Error":`...)
	b = appendJSONString(b, r.err)
	return append(b, '}')
}

func appendStrings(b []byte, list []string) []byte {
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func appendFailed(b []byte, list []failedNode) []byte {
	b = append(b, '{')
	for i, f := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f.node)
		b = append(b, ':')
		b = appendJSONString(b, f.reason)
	}
	return append(b, '}')
}

type hostScore struct {
	host  string
	score int64
}

// appendPriorities writes a HostPriorityList.
func appendPriorities(b []byte, list []hostScore) []byte {
	b = append(b, '[')
	for i, h := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Host":`...)
		b = appendJSONString(b, h.host)
		b = append(b, `,"Score":`...)
		b = strconv.AppendInt(b, h.score, 10)
		b = append(b, '}')
	}
	return append(b, ']')
}
