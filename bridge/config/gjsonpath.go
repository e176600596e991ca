package config

import (
	"errors"
	"fmt"
)

// checkGJSONPath reports whether p looks like a well-formed gjson path.
//
// gjson has no path validator (a bad path simply matches nothing), so this is
// a conservative syntax check: the path is not empty, has no control
// characters, no empty component (a leading, trailing or doubled "." or
// "|"), no lone trailing backslash, and its (), [] and {} pairs (used by
// queries such as #(name=="x"), multipaths and modifier arguments) balance
// outside double-quoted strings. A literal bracket or dot in a key is written
// escaped, as gjson expects: `a\.b`, `a\(b`.
func checkGJSONPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	var stack []byte
	inString := false
	segLen := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x20 || c == 0x7f {
			return errors.New("control character in path")
		}
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '\\':
			if i+1 >= len(p) {
				return errors.New(`path ends with a lone \`)
			}
			i++
			segLen++
			continue
		case '"':
			if len(stack) > 0 {
				inString = true
			}
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != opening(c) {
				return fmt.Errorf("unbalanced %q at offset %d (escape a literal one as \\%c)", c, i, c)
			}
			stack = stack[:len(stack)-1]
		case '.', '|':
			if len(stack) == 0 {
				if segLen == 0 {
					return fmt.Errorf("empty component at offset %d (a leading, trailing or doubled %q)", i, c)
				}
				segLen = 0
				continue
			}
		}
		segLen++
	}
	switch {
	case inString:
		return errors.New("unterminated string in path")
	case len(stack) > 0:
		c := stack[len(stack)-1]
		return fmt.Errorf("unclosed %q (escape a literal one as \\%c)", c, c)
	case segLen == 0:
		return errors.New("path ends with a separator")
	}
	return nil
}

// opening returns the opening bracket that closing bracket c matches.
func opening(c byte) byte {
	switch c {
	case ')':
		return '('
	case ']':
		return '['
	}
	return '{'
}
