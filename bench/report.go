package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"
)

// result is what one scenario measured on one backend.
type result struct {
	Scenario string   `json:"scenario"`
	Backend  string   `json:"backend"`
	Setup    string   `json:"setup"`
	Rows     []*row   `json:"rows"`
	Notes    []string `json:"notes,omitempty"`
	Error    string   `json:"error,omitempty"`
	Elapsed  float64  `json:"elapsed_seconds"`

	// For tests: pollbridge's CPU seconds in the measured window, its
	// peak RSS, the floor's CPU seconds and the correctness check.
	pbCPU, floorCPU float64
	peakRSS         int64
	check           *checkResult
}

// row is one measured figure, with its floor, the ratio to the floor and
// the target it is held to, when those apply.
type row struct {
	Metric string   `json:"metric"`
	Value  *float64 `json:"value,omitempty"`
	Text   string   `json:"text,omitempty"` // instead of Value
	Unit   string   `json:"unit,omitempty"`
	Floor  *float64 `json:"floor,omitempty"`
	Ratio  *float64 `json:"ratio,omitempty"`
	Target string   `json:"target,omitempty"`
	Pass   *bool    `json:"pass,omitempty"`
}

// add appends a numeric row.
func (r *result) add(metric string, v float64, unit string) *row {
	x := &row{Metric: metric, Value: &v, Unit: unit}
	r.Rows = append(r.Rows, x)
	return x
}

// text appends a row whose value is text.
func (r *result) text(metric, text string) *row {
	x := &row{Metric: metric, Text: text}
	r.Rows = append(r.Rows, x)
	return x
}

// note appends a line printed under the table.
func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// vs sets the row's floor figure and the ratio value/floor.
func (x *row) vs(floor float64) *row {
	x.Floor = &floor
	if x.Value != nil && floor > 0 {
		ratio := *x.Value / floor
		x.Ratio = &ratio
	}
	return x
}

// want sets the target and whether it was met.
func (x *row) want(target string, pass bool) *row {
	x.Target, x.Pass = target, &pass
	return x
}

// atMost and atLeast hold the row's value (or, with onRatio, its ratio)
// to a limit.
func (x *row) atMost(limit float64, onRatio bool) *row {
	v, what := x.Value, ""
	if onRatio {
		v, what = x.Ratio, "ratio "
	}
	return x.want(fmt.Sprintf("%s≤ %s", what, fmtNum(limit)), v != nil && *v <= limit)
}

func (x *row) atLeast(limit float64, onRatio bool) *row {
	v, what := x.Value, ""
	if onRatio {
		v, what = x.Ratio, "ratio "
	}
	return x.want(fmt.Sprintf("%s≥ %s", what, fmtNum(limit)), v != nil && *v >= limit)
}

// fmtNum writes a number with about three significant digits, integers
// with thousands separators.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprint(v)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case math.Abs(v) >= 100:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	case math.Abs(v) >= 0.01:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.4f", v)
	}
}

// groupThousands puts commas between groups of three digits.
func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtRatio writes a ratio with three decimals below 10.
func fmtRatio(r float64) string {
	if math.Abs(r) < 10 {
		return fmt.Sprintf("%.3f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

// fmtVal writes a value with its unit; "" for none.
func fmtVal(v *float64, unit string) string {
	if v == nil {
		return ""
	}
	s := fmtNum(*v)
	switch unit {
	case "":
		return s
	case "/s", "%":
		return s + unit
	}
	return s + " " + unit
}

// markdown writes the result as a heading, a table and its notes.
func (r *result) markdown(w io.Writer) {
	fmt.Fprintf(w, "\n### %s / %s\n\n%s (%.0f s)\n\n", r.Scenario, r.Backend, r.Setup, r.Elapsed)
	if r.Error != "" {
		fmt.Fprintf(w, "**ERROR:** %s\n\n", r.Error)
	}
	if len(r.Rows) > 0 {
		fmt.Fprintln(w, "| metric | pollbridge | floor | ratio | target | |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---|---|")
		for _, x := range r.Rows {
			val := x.Text
			if val == "" {
				val = fmtVal(x.Value, x.Unit)
			}
			ratio, verdict := "", ""
			if x.Ratio != nil {
				ratio = fmtRatio(*x.Ratio)
			}
			if x.Pass != nil {
				verdict = "pass"
				if !*x.Pass {
					verdict = "**FAIL**"
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", x.Metric, val, fmtVal(x.Floor, x.Unit), ratio, x.Target, verdict)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\n- %s", n)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
	}
}

// machine describes where the harness ran.
type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Redis    string `json:"redis,omitempty"`
	ClockHz  int    `json:"clock_tick"`
	Started  string `json:"started"`
}

// describeMachine reads the machine's figures; redisVersion is "" when
// Redis is not used.
func describeMachine(e *env, redisVersion string) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Redis: redisVersion, ClockHz: int(e.proc.tick), Started: time.Now().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// markdown writes the machine line.
func (m machine) markdown(w io.Writer) {
	fmt.Fprintf(w, "## pollbridge load harness\n\nmachine: %d CPUs (nproc), %s, Linux %s, %s, clock tick %d Hz",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, m.ClockHz)
	if m.Redis != "" {
		fmt.Fprintf(w, ", Redis %s (shared)", m.Redis)
	}
	fmt.Fprintf(w, "; started %s\n", m.Started)
}

// writeJSON writes the machine and the results to path.
func writeResultsJSON(path string, m machine, results []*result) error {
	b, err := json.MarshalIndent(struct {
		Machine machine   `json:"machine"`
		Results []*result `json:"results"`
	}{m, results}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
