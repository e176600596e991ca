package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// Payloads and item data are stored as raw bytes, not re-encoded as JSON:
// encoding/json would compact and HTML-escape them, and a retry must send the
// very same body bytes.

// recordVersion is the first byte of every outbox record.
const recordVersion = 1

// record is an outbox entry: the delivery plus where its index entry is.
type record struct {
	d   store.Delivery
	seq uint64
	// at is the time part of the delivery's key in due/<sink> (its due time
	// or, while claimed, its lease end) or in dead/<sink> (when it died).
	at int64
}

func (r *record) key() []byte { return indexKey(r.at, r.seq) }

// fifoKey is the key of the record's entry in fifo/<sink>: its item's
// fifoPrefix, then its seq.
func (r *record) fifoKey() []byte {
	return binary.BigEndian.AppendUint64(fifoPrefix(r.d.Source, r.d.Key), r.seq)
}

// fifoPrefix starts the fifo/<sink> keys of one item: the source and the
// item key, each length-prefixed, so that no item's prefix starts another's.
func fifoPrefix(source, key string) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(source)+len(key)+8)
	b = appendBytes(b, []byte(source))
	return appendBytes(b, []byte(key))
}

// liveKey is the key of a live record's entry in live/<sink>: its Due,
// then its seq.
func (r *record) liveKey() []byte { return indexKey(nanos(r.d.Due), r.seq) }

func (r *record) dead() bool { return !r.d.Dead.IsZero() }

// dueValue is the value of the record's due/<sink> entry.
func (r *record) dueValue() []byte {
	flag := byte(flagPending)
	if r.d.Attempts > 0 {
		flag = flagRetrying
	}
	return append([]byte{flag}, r.d.ID...)
}

const (
	flagPending  = 0
	flagRetrying = 1
)

func encodeRecord(r *record) ([]byte, error) {
	d := &r.d
	b := make([]byte, 0, 128+len(d.Payload)+len(d.LastError))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendVarint(b, r.at)
	for _, s := range []string{d.ID, d.EventID, d.Sink, d.Source, d.Key, d.LastError} {
		b = appendBytes(b, []byte(s))
	}
	b = appendBytes(b, d.Payload)
	b = binary.AppendVarint(b, int64(d.Attempts))
	for _, t := range []time.Time{d.Created, d.Due, d.Dead} {
		tb, err := t.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode delivery %q: %w", d.ID, err)
		}
		b = appendBytes(b, tb)
	}
	return b, nil
}

func decodeRecord(b []byte) (*record, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return nil, errors.New("decode delivery: unknown record version")
	}
	r := &record{}
	d := &r.d
	rd := reader{b: b[1:]}
	r.seq = rd.uvarint()
	r.at = rd.varint()
	for _, s := range []*string{&d.ID, &d.EventID, &d.Sink, &d.Source, &d.Key, &d.LastError} {
		*s = string(rd.bytes())
	}
	if p := rd.bytes(); len(p) > 0 {
		d.Payload = append([]byte(nil), p...)
	}
	d.Attempts = int(rd.varint())
	for _, t := range []*time.Time{&d.Created, &d.Due, &d.Dead} {
		if tb := rd.bytes(); rd.err == nil {
			if err := t.UnmarshalBinary(tb); err != nil {
				return nil, fmt.Errorf("decode delivery %q: %w", d.ID, err)
			}
		}
	}
	if rd.err != nil {
		return nil, fmt.Errorf("decode delivery: %w", rd.err)
	}
	return r, nil
}

func encodeItem(it store.Item) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(it.Fingerprint)+len(it.Data))
	b = appendBytes(b, []byte(it.Fingerprint))
	return append(b, it.Data...)
}

// itemsDecoder decodes the items of one source into shared memory: every
// key and every fingerprint into one string each, every body into one byte
// slice (each item's capped, so an append to one never reaches the next).
// Three allocations for a whole source instead of three per item: loading
// the stored items of a changed source was 7% of the fleet's CPU, much of
// it allocation and the collector's work on it. The items share their
// memory, so it lives while any of them does: a poll's, not longer.
type itemsDecoder struct {
	keys, fps strings.Builder // String() shares their bytes: no copy
	data      []byte
	spans     []itemSpan
}

// itemSpan locates one item in an itemsDecoder's memory.
type itemSpan struct {
	keyEnd, fpEnd, dataEnd int // each starts where the previous item's ends
}

// itemsSize is what an itemsDecoder needs for a set of items; count adds
// one.
type itemsSize struct{ n, keys, fps, data int }

func (z *itemsSize) count(k, v []byte) {
	z.n++
	z.keys += len(k)
	fp, w := binary.Uvarint(v)
	if w <= 0 || fp > uint64(len(v)-w) { // add reports it
		return
	}
	z.fps += int(fp)
	z.data += len(v) - w - int(fp)
}

// newItemsDecoder returns a decoder sized for z.
func newItemsDecoder(z itemsSize) *itemsDecoder {
	d := &itemsDecoder{data: make([]byte, 0, z.data), spans: make([]itemSpan, 0, z.n)}
	d.keys.Grow(z.keys)
	d.fps.Grow(z.fps)
	return d
}

// add decodes the stored item v (see encodeItem) under key k; neither is
// kept.
func (d *itemsDecoder) add(k, v []byte) error {
	rd := reader{b: v}
	fp := rd.bytes()
	if rd.err != nil {
		return fmt.Errorf("decode item: %w", rd.err)
	}
	d.keys.Write(k)
	d.fps.Write(fp)
	d.data = append(d.data, rd.b...)
	d.spans = append(d.spans, itemSpan{keyEnd: d.keys.Len(), fpEnd: d.fps.Len(), dataEnd: len(d.data)})
	return nil
}

// fill puts every item added into items.
func (d *itemsDecoder) fill(items map[string]store.Item) {
	keys, fps := d.keys.String(), d.fps.String()
	var prev itemSpan
	for _, sp := range d.spans {
		it := store.Item{Fingerprint: fps[prev.fpEnd:sp.fpEnd]}
		if sp.dataEnd > prev.dataEnd {
			it.Data = d.data[prev.dataEnd:sp.dataEnd:sp.dataEnd]
		}
		items[keys[prev.keyEnd:sp.keyEnd]] = it
		prev = sp
	}
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes what the append helpers wrote; the first error sticks.
type reader struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated record")

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errTruncated
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errTruncated
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next length-prefixed field; it aliases the input.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errTruncated
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
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

// timePrefix encodes a UnixNano so that byte order is time order.
func timePrefix(at int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(at)^(1<<63))
}

// indexKey is the key of a due or dead index entry: time, then seq.
func indexKey(at int64, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(timePrefix(at), seq)
}
