package core

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; wrap them with %w so callers can test with errors.Is.
var (
	// ErrInsufficientCapacity: the request does not fit in what is allocatable.
	ErrInsufficientCapacity = errors.New("insufficient capacity")
	// ErrUnknownNode: the ledger has no node of that name.
	ErrUnknownNode = errors.New("unknown node")
	// ErrUnknownVG: the node has no allocatable VG of that name.
	ErrUnknownVG = errors.New("unknown volume group")
	// ErrUnknownDevice: the node has no allocatable device of that name.
	ErrUnknownDevice = errors.New("unknown device")
	// ErrConflict: a claim already holds a different charge.
	ErrConflict = errors.New("claim already holds a different charge")
	// ErrInvalid: a value a user wrote is not acceptable.
	ErrInvalid = errors.New("invalid value")
	// ErrUnknownClaim: the ledger holds no such claim. It also matches
	// ErrInvalid, which Commit and Resize reported for it before.
	ErrUnknownClaim error = &sentinel{msg: "claim not in the ledger", also: ErrInvalid}
)

// sentinel is an error value that is also another sentinel under errors.Is.
type sentinel struct {
	msg  string
	also error
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Unwrap() error { return s.also }

// InvalidValueError names a field, the value found and what is accepted.
type InvalidValueError struct {
	Field    string
	Value    string
	Accepted []string
	Reason   string
}

func (e *InvalidValueError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid %s %q", e.Field, e.Value)
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if len(e.Accepted) > 0 {
		fmt.Fprintf(&b, " (accepted: %s)", strings.Join(e.Accepted, ", "))
	}
	return b.String()
}

func (e *InvalidValueError) Unwrap() error { return ErrInvalid }
