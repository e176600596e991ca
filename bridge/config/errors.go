package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a configuration file.
//
// Line and Col are 1-based positions of the offending YAML node; both are 0
// when the problem has no position (for example an unreadable file). Field is
// the dotted path of the setting, such as "sources[1].schedule", or "" when
// the problem is not about one setting. Msg never contains a secret: values
// are quoted as written in the file, before ${VAR} expansion, and secrets,
// URLs and header values are never quoted at all.
type Error struct {
	File  string
	Line  int
	Col   int
	Field string
	Msg   string
}

// Error formats the problem as "FILE:LINE: FIELD: MSG", leaving out the
// parts that are empty ("FILE: MSG" when there is no line).
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration file, sorted by line.
// Load and Parse return their errors as *Errors, never as another type.
type Errors []Error

// Error returns one problem per line, in file order.
func (e *Errors) Error() string {
	lines := make([]string, len(*e))
	for i, x := range *e {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// add appends one problem.
func (e *Errors) add(file string, line, col int, field, format string, args ...any) {
	*e = append(*e, Error{File: file, Line: line, Col: col, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// sort orders the problems by position, keeping the order of problems found
// at the same position.
func (e *Errors) sort() {
	sort.SliceStable(*e, func(i, j int) bool {
		a, b := (*e)[i], (*e)[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}
