package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// The change-selection settings decode as written, unset ones stay zero
// (their defaults), and a filter comes out compiled.
func TestChangeSelectionSettings(t *testing.T) {
	tests := []struct {
		name   string
		extra  string
		check  func(t *testing.T, s *Source)
		filter bool
	}{
		{
			name: "unset settings stay zero and mean their defaults",
			check: func(t *testing.T, s *Source) {
				if s.Watch != nil || s.Events != nil || s.Filter != "" || s.DeleteAfter != 0 || s.Backoff != (PollBackoff{}) {
					t.Errorf("defaults not zero: %+v", s)
				}
			},
		},
		{
			name: "every setting",
			extra: `    watch: [status, "lines.#.qty"]
    events: [updated, deleted]
    filter: item.status == "paid" && previous.status != "paid"
    delete_after: 3
    backoff: {initial: 30s, max: 5m}
`,
			filter: true,
			check: func(t *testing.T, s *Source) {
				if !reflect.DeepEqual(s.Watch, []string{"status", "lines.#.qty"}) ||
					!reflect.DeepEqual(s.Events, []string{"updated", "deleted"}) ||
					s.DeleteAfter != 3 || s.Backoff != (PollBackoff{Initial: 30 * time.Second, Max: 5 * time.Minute}) {
					t.Errorf("decoded %+v", s)
				}
			},
		},
		{
			name: "a multi-line filter with the examples of the docs",
			extra: `    filter: |
      type == "item.deleted" ||
      any(changes, .path == "/status")
`,
			filter: true,
		},
		{
			name:   "initial alone may be up to the default max",
			extra:  "    backoff: {initial: 10m}\n",
			check:  func(t *testing.T, s *Source) { checkEq(t, "initial", s.Backoff.Initial, 10*time.Minute) },
			filter: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("c.yaml", []byte(minimal+tt.extra), nil)
			if err != nil {
				t.Fatal(err)
			}
			s := &cfg.Sources[0]
			if got := s.CompiledFilter() != nil; got != tt.filter {
				t.Errorf("compiled filter present = %v, want %v", got, tt.filter)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func checkEq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// CompileFilter type-checks against the event's variables and answers in
// one line with the position.
func TestCompileFilter(t *testing.T) {
	tests := []struct {
		expr    string
		wantErr string // "" = compiles
	}{
		{`item.status == "paid" && previous.status != "paid"`, ""},
		{`type == "item.deleted"`, ""},
		{`any(changes, .path == "/status" && .new == "paid")`, ""},
		{`source == "orders" && key startsWith "A-"`, ""},
		{`previous == nil`, ""},
		{`item.total > 10`, ""},
		{`status == "paid"`, "unknown name status (column 1)"},
		{`type`, "expected bool, but got string"},
		{`len(changes)`, "expected bool, but got int"},
		{`key * 2 == 4`, "invalid operation"},
		{"item.a ==\n  ", "(line 2, column"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			prog, err := CompileFilter(tt.expr)
			if tt.wantErr == "" {
				if err != nil || prog == nil {
					t.Fatalf("CompileFilter: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("compiled, want an error")
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantErr) || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line containing %q", msg, tt.wantErr)
			}
		})
	}
}
