package config

import (
	"fmt"
	"strings"
)

// envRef is one ${VAR} reference that expansion replaced.
type envRef struct {
	name  string
	value string
}

// expandEnv replaces ${VAR} and ${VAR:-default} in s with values from
// lookup, and $$ with a single $. Any other $ is kept as it is. The default
// is literal text up to the closing brace (no nested references). It returns
// the expanded text and the references it replaced; the error names the
// problem (a variable that is not set, a malformed reference) without
// quoting any value. A variable that is set but empty is an error too,
// unless the reference has a default (${VAR:-} allows empty).
func expandEnv(s string, lookup func(string) (string, bool)) (string, []envRef, error) {
	if !strings.Contains(s, "$") {
		return s, nil, nil
	}
	var b strings.Builder
	var refs []envRef
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
			continue
		case '{':
		default:
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", refs, fmt.Errorf("unterminated ${ (write $$ for a literal $)")
		}
		body := s[i+2 : i+2+end]
		name, def, hasDef := strings.Cut(body, ":-")
		if !validEnvName(name) {
			return "", refs, fmt.Errorf("bad variable reference: use ${NAME} or ${NAME:-default}, NAME being letters, digits and _ (write $$ for a literal $)")
		}
		val, ok := lookup(name)
		switch {
		case hasDef && val == "":
			val = def
		case !ok:
			return "", refs, fmt.Errorf("environment variable %s is not set", name)
		case val == "":
			// An empty secret would silently send unsigned webhooks, an
			// empty token a bare "Bearer ": refuse; ${NAME:-} allows it.
			return "", refs, fmt.Errorf("environment variable %s is empty (write ${%s:-} if empty is intended)", name, name)
		default:
			refs = append(refs, envRef{name: name, value: val})
		}
		b.WriteString(val)
		i += 2 + end + 1
	}
	return b.String(), refs, nil
}

// validEnvName reports whether name is a shell-style variable name.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
