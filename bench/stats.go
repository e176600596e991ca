package main

import (
	"bufio"
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the q-quantile (0..1) of ds by the nearest-rank
// method; 0 for none. ds is sorted in place.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is one parsed /metrics answer.
type scrape []sample

// parseMetrics reads the Prometheus text exposition format (comments
// skipped; label values without escaped quotes, as pollbridge writes them).
func parseMetrics(text string) scrape {
	var out scrape
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		var s sample
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			s.labels = parseLabels(line[i+1 : j])
			rest = line[j+1:]
		} else if i >= 0 {
			s.name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// parseLabels reads `a="x",b="y"`.
func parseLabels(s string) map[string]string {
	m := map[string]string{}
	for s != "" {
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			break
		}
		end := strings.IndexByte(rest, '"')
		for end > 0 && rest[end-1] == '\\' {
			next := strings.IndexByte(rest[end+1:], '"')
			if next < 0 {
				end = -1
				break
			}
			end += next + 1
		}
		if end < 0 {
			break
		}
		m[strings.TrimSpace(name)] = rest[:end]
		s = strings.TrimPrefix(rest[end+1:], ",")
	}
	return m
}

// sum adds the values of the series called name whose labels include
// every pair of match.
func (sc scrape) sum(name string, match ...string) float64 {
	total := 0.0
	for _, s := range sc {
		if s.name == name && s.matches(match) {
			total += s.value
		}
	}
	return total
}

// labelsWith counts the distinct values of label among the series called
// name whose value is positive.
func (sc scrape) labelsWith(name, label string) int {
	seen := map[string]bool{}
	for _, s := range sc {
		if s.name == name && s.value > 0 {
			seen[s.labels[label]] = true
		}
	}
	return len(seen)
}

// matches reports whether s has every label name/value pair of pairs.
func (s sample) matches(pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if s.labels[pairs[i]] != pairs[i+1] {
			return false
		}
	}
	return true
}

// buckets returns the cumulative counts of histogram name by upper bound,
// summed over its other labels.
func (sc scrape) buckets(name string) map[float64]float64 {
	out := map[float64]float64{}
	for _, s := range sc {
		if s.name != name+"_bucket" {
			continue
		}
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			continue
		}
		out[le] += s.value
	}
	return out
}

// histogramQuantile returns the q-quantile of the observations histogram
// name gained between two scrapes, interpolated linearly inside a bucket
// as Prometheus does; ok is false without observations.
func histogramQuantile(before, after scrape, name string, q float64) (v float64, ok bool) {
	b, a := before.buckets(name), after.buckets(name)
	type bucket struct{ le, n float64 }
	var bs []bucket
	for le, n := range a {
		bs = append(bs, bucket{le, n - b[le]})
	}
	slices.SortFunc(bs, func(x, y bucket) int { return cmp.Compare(x.le, y.le) })
	if len(bs) == 0 || bs[len(bs)-1].n <= 0 {
		return 0, false
	}
	rank := q * bs[len(bs)-1].n
	lower, prevN := 0.0, 0.0
	for _, x := range bs {
		if x.n >= rank {
			if math.IsInf(x.le, 1) {
				return lower, true
			}
			if x.n == prevN {
				return x.le, true
			}
			return lower + (x.le-lower)*(rank-prevN)/(x.n-prevN), true
		}
		lower, prevN = x.le, x.n
	}
	return lower, true
}
