package redisstore

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Payloads and item data are stored as raw bytes, never re-encoded: a retry
// must send the very same body bytes.

// recordMagic starts every delivery record; see the package doc.
const recordMagic = "1|"

// Field positions of a delivery record (1-based, as the Lua scripts use them).
const (
	fSeq = iota + 1
	fAttempts
	fDue
	fDead
	fLastError
	fSink
	fID
	fEventID
	fSource
	fKey
	fCreated
	fPayload
	nFields = fPayload
)

// appendField appends s as a netstring-like field: decimal length, ':', bytes.
func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// recordTail encodes the fields of d after the sequence number; the commit
// script prefixes it with recordMagic and the sequence field.
func recordTail(d store.Delivery) string {
	b := make([]byte, 0, 128+len(d.Payload)+len(d.LastError))
	for _, s := range []string{strconv.Itoa(d.Attempts), nanoString(d.Due), nanoString(d.Dead), d.LastError,
		d.Sink, d.ID, d.EventID, d.Source, d.Key, nanoString(d.Created), string(d.Payload)} {
		b = appendField(b, s)
	}
	return string(b)
}

// record is a decoded delivery record.
type record struct {
	d   store.Delivery
	seq uint64
}

var errBadRecord = errors.New("malformed delivery record")

// decodeRecord decodes a delivery record as written by the scripts.
func decodeRecord(r string) (*record, error) {
	if !strings.HasPrefix(r, recordMagic) {
		return nil, fmt.Errorf("decode delivery: %w (unknown version)", errBadRecord)
	}
	var f [nFields + 1]string
	rest := r[len(recordMagic):]
	for i := 1; i <= nFields; i++ {
		c := strings.IndexByte(rest, ':')
		if c < 0 {
			return nil, fmt.Errorf("decode delivery: %w (field %d)", errBadRecord, i)
		}
		n, err := strconv.Atoi(rest[:c])
		if err != nil || n < 0 || n > len(rest)-c-1 {
			return nil, fmt.Errorf("decode delivery: %w (field %d)", errBadRecord, i)
		}
		f[i] = rest[c+1 : c+1+n]
		rest = rest[c+1+n:]
	}
	seq, err := strconv.ParseUint(f[fSeq], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("decode delivery %q: %w (sequence)", f[fID], errBadRecord)
	}
	attempts, err := strconv.Atoi(f[fAttempts])
	if err != nil {
		return nil, fmt.Errorf("decode delivery %q: %w (attempts)", f[fID], errBadRecord)
	}
	rec := &record{seq: seq, d: store.Delivery{
		ID: f[fID], EventID: f[fEventID], Sink: f[fSink], Source: f[fSource], Key: f[fKey],
		Attempts: attempts, LastError: f[fLastError],
	}}
	if p := f[fPayload]; p != "" {
		rec.d.Payload = []byte(p)
	}
	for _, t := range []struct {
		dst *time.Time
		s   string
	}{{&rec.d.Created, f[fCreated]}, {&rec.d.Due, f[fDue]}, {&rec.d.Dead, f[fDead]}} {
		if *t.dst, err = parseNano(t.s); err != nil {
			return nil, fmt.Errorf("decode delivery %q: %w", f[fID], err)
		}
	}
	return rec, nil
}

// encodeItem encodes an item as its fingerprint field followed by its data.
func encodeItem(it store.Item) string {
	b := make([]byte, 0, 8+len(it.Fingerprint)+len(it.Data))
	b = appendField(b, it.Fingerprint)
	return string(append(b, it.Data...))
}

func decodeItem(v string) (store.Item, error) {
	c := strings.IndexByte(v, ':')
	if c < 0 {
		return store.Item{}, errors.New("decode item: malformed value")
	}
	n, err := strconv.Atoi(v[:c])
	if err != nil || n < 0 || n > len(v)-c-1 {
		return store.Item{}, errors.New("decode item: malformed value")
	}
	it := store.Item{Fingerprint: v[c+1 : c+1+n]}
	if data := v[c+1+n:]; data != "" {
		it.Data = []byte(data)
	}
	return it, nil
}

// nanoString encodes t as UnixNano in decimal, clamped to the int64 range;
// the zero time is "".
func nanoString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(nanos(t), 10)
}

func parseNano(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w (time %q)", errBadRecord, s)
	}
	return time.Unix(0, n), nil
}

// nanos returns t as UnixNano, clamped to the int64 range.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// floorMs is t in whole Unix milliseconds, rounded down: the score a claim at
// t compares against.
func floorMs(t time.Time) int64 {
	n := nanos(t)
	ms := n / 1e6
	if n%1e6 < 0 {
		ms--
	}
	return ms
}

// ceilMs is t in whole Unix milliseconds, rounded up: the score of something
// due at t, so that it is never claimed before t.
func ceilMs(t time.Time) int64 {
	n := nanos(t)
	ms := n / 1e6
	if n%1e6 > 0 {
		ms++
	}
	return ms
}

// score formats a millisecond score for ZADD.
func score(ms int64) string { return strconv.FormatInt(ms, 10) }
