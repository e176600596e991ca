package config

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Event types a source's Events list may name.
const (
	EventCreated = "created"
	EventUpdated = "updated"
	EventDeleted = "deleted"
)

// Defaults of the change-selection settings; an unset field is left zero
// in Source and means its default.
const (
	// DefaultDeleteAfter is Source.DeleteAfter when unset.
	DefaultDeleteAfter = 1
	// DefaultPollBackoffMax is Source.Backoff.Max when unset.
	DefaultPollBackoffMax = 10 * time.Minute
)

// compiledFilter holds a source's compiled filter; the zero value means no
// filter.
type compiledFilter struct {
	prog *vm.Program
}

// CompiledFilter returns the source's Filter as compiled by Parse, or nil
// when there is no filter or the Source was not built by Parse (then call
// CompileFilter). The program is safe for concurrent use.
func (s *Source) CompiledFilter() *vm.Program {
	return s.filter.prog
}

// filterEnv declares the variables a filter sees, for type checking. The
// values that Run gets must have the same types: strings, decoded JSON
// objects (map[string]any; a nil map when absent) and a list of changes.
func filterEnv() map[string]any {
	return map[string]any{
		"type":     "",
		"source":   "",
		"key":      "",
		"item":     map[string]any{},
		"previous": map[string]any{},
		"changes":  []map[string]any{},
	}
}

// CompileFilter compiles and type-checks a filter expression. The
// expression must give a bool. It sees these variables:
//
//	type      string: "item.created", "item.updated" or "item.deleted"
//	source    string: the source's name
//	key       string: the item's key
//	item      map[string]any: the item now (a nil map for deletions)
//	previous  map[string]any: the item before (a nil map for creations)
//	changes   []map[string]any: {op, path, old, new} per changed field
//
// Items are decoded JSON (numbers as float64). The error is one line,
// with the position inside the expression.
func CompileFilter(src string) (*vm.Program, error) {
	prog, err := expr.Compile(src, expr.Env(filterEnv()), expr.AsBool())
	if err != nil {
		return nil, errors.New(filterMessage(src, err))
	}
	return prog, nil
}

// filterMessage turns an expr compile error, which spans several lines
// (message, source, caret), into one line.
func filterMessage(src string, err error) string {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return strings.Join(strings.Fields(err.Error()), " ")
	}
	if strings.Contains(src, "\n") {
		return fmt.Sprintf("%s (line %d, column %d of the expression)", fe.Message, fe.Line, fe.Column+1)
	}
	return fmt.Sprintf("%s (column %d)", fe.Message, fe.Column+1)
}

// changeSelection validates the settings that choose which changes a
// source sends (watch, events, filter, delete_after, backoff) and compiles
// its filter. Unset settings stay zero: they mean their defaults.
func (d *decoder) changeSelection(p string, s *Source) {
	for i, path := range s.Watch {
		d.gjsonPath(fmt.Sprintf("%s.watch[%d]", p, i), path)
	}

	d.eventTypes(p+".events", s.Events)
	s.filter = d.filterExpr(p+".filter", s.Filter)

	if d.isSet(p+".delete_after") && s.DeleteAfter < 1 {
		d.errAt(p+".delete_after", "must be 1 or more, got %d", s.DeleteAfter)
	}

	b := &s.Backoff
	ok := d.duration(p+".backoff.initial", &b.Initial, 0)
	ok = d.duration(p+".backoff.max", &b.Max, 0) && ok
	if max := cmp.Or(b.Max, DefaultPollBackoffMax); ok && b.Initial > max {
		d.errAt(p+".backoff.initial", "must not exceed max (%s > %s)", b.Initial, max)
	}
}

// eventTypes validates an events list (created, updated, deleted).
func (d *decoder) eventTypes(f string, events []string) {
	if d.isSet(f) && len(events) == 0 {
		d.errAt(f, "empty list: name at least one of created, updated, deleted (or leave events out to send all)")
	}
	seen := map[string]bool{}
	for i, ev := range events {
		fi := fmt.Sprintf("%s[%d]", f, i)
		switch {
		case d.failed(fi):
		case !oneOf(ev, EventCreated, EventUpdated, EventDeleted):
			d.errAt(fi, "bad event type %q: want created, updated or deleted", d.orig(fi))
		case seen[ev]:
			d.errAt(fi, "event type %q is listed twice", d.orig(fi))
		}
		seen[ev] = true
	}
}

// filterExpr validates and compiles a filter expression field.
func (d *decoder) filterExpr(f, src string) compiledFilter {
	switch {
	case d.failed(f):
	case d.isSet(f) && strings.TrimSpace(src) == "":
		d.errAt(f, "empty expression (leave filter out to send every event)")
	case src != "":
		prog, err := CompileFilter(src)
		if err != nil {
			d.errAt(f, "%v", err)
			break
		}
		return compiledFilter{prog: prog}
	}
	return compiledFilter{}
}

// CompiledFilter returns the sink's Filter as compiled by Parse, or nil
// when there is none or the Sink was not built by Parse.
func (s *Sink) CompiledFilter() *vm.Program {
	return s.filter.prog
}
