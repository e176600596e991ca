package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// maxNodes bounds how many value nodes one file may expand to through
// aliases, so a "billion laughs" file fails fast instead of eating memory.
// A real configuration has a few hundred.
const maxNodes = 100_000

var (
	durationType = reflect.TypeOf(time.Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
	keyPathsType = reflect.TypeOf(KeyPaths(nil))
	yamlErrLine  = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)
)

// info is what the decoder remembers about the YAML node of one field path,
// for defaults and for the line numbers and quotes of validation errors.
type info struct {
	line, col int
	// orig is a scalar's text as written, before ${VAR} expansion.
	orig string
	// refs are the environment variables expansion substituted.
	refs []envRef
	// null: the key is present with no value (defaults apply).
	null bool
	// bad: decoding the value failed and was reported already.
	bad bool
}

// pair is one key/value of a mapping, after merge keys are applied.
type pair struct {
	key, val *yaml.Node
}

// decoder walks a yaml.Node tree against the Config struct: it expands
// environment references, rejects unknown and duplicate keys, converts
// scalars and records where every field was written.
type decoder struct {
	file    string
	lookup  func(string) (string, bool)
	errs    Errors
	at      map[string]*info
	budget  int
	merged  map[*yaml.Node][]pair
	merging map[*yaml.Node]bool
}

func newDecoder(file string, lookup func(string) (string, bool)) *decoder {
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	return &decoder{
		file:    file,
		lookup:  lookup,
		at:      map[string]*info{},
		budget:  maxNodes,
		merged:  map[*yaml.Node][]pair{},
		merging: map[*yaml.Node]bool{},
	}
}

// errNode records a problem at node n.
func (d *decoder) errNode(n *yaml.Node, field, format string, args ...any) {
	d.errs.add(d.file, n.Line, n.Column, field, format, args...)
}

// parseDocument parses data into its single document's root node. It returns
// nil after recording an error when data is not one non-empty YAML document.
func (d *decoder) parseDocument(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 has panicked on hostile input before; a config loader
		// must report, not crash.
		if r := recover(); r != nil {
			root = nil
			d.errs.add(d.file, 0, 0, "", "parse yaml: internal error: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errs.add(d.file, 0, 0, "", "config is empty")
		} else {
			d.yamlError(err, data)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.errNode(&extra, "", "only one YAML document is allowed (found a second one)")
		return nil
	case !errors.Is(err, io.EOF):
		d.yamlError(err, data)
		return nil
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		d.errs.add(d.file, 0, 0, "", "config is empty")
		return nil
	}
	root = resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		d.errNode(root, "", "top level must be a mapping with keys such as state, sinks and sources, got %s", kindName(root))
		return nil
	}
	return root
}

// yamlError records a yaml.v3 syntax error. yaml.v3 often reports the line
// where the enclosing block started (or no line at all), so the line is
// refined to where a prefix of the file starts failing with the same message.
func (d *decoder) yamlError(err error, data []byte) {
	line, msg := splitYAMLError(err)
	if l := firstFailingLine(data, msg); l > 0 {
		line = l
	}
	d.errs.add(d.file, line, 0, "", "%s", msg)
}

// splitYAMLError splits a yaml.v3 error into its line (0 if none) and
// message.
func splitYAMLError(err error) (int, string) {
	if m := yamlErrLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, m[2]
	}
	return 0, strings.TrimPrefix(err.Error(), "yaml: ")
}

// firstFailingLine returns a line L such that the file's first L lines fail
// to parse with message msg and its first L-1 lines do not, found by binary
// search; 0 when the whole file does not fail that way.
func firstFailingLine(data []byte, msg string) int {
	var ends []int // ends[i] is the end offset of line i+1
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	fails := func(lines int) bool {
		err := parseAll(data[:ends[lines-1]])
		if err == nil {
			return false
		}
		_, got := splitYAMLError(err)
		return got == msg
	}
	lo, hi := 0, len(ends) // lines lo parse without that error, lines hi fail with it
	if !fails(hi) {
		return 0
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// parseAll parses every document of data, returning the first error.
func parseAll(data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// decodeValue decodes node n into v, recording it under path.
func (d *decoder) decodeValue(path string, n *yaml.Node, v reflect.Value) {
	use := n
	n = resolve(n)
	d.budget--
	if d.budget < 0 {
		if d.budget == -1 {
			d.errNode(use, path, "too many values after expanding aliases (more than %d)", maxNodes)
		}
		return
	}
	inf := &info{line: use.Line, col: use.Column, null: isNull(n)}
	d.at[path] = inf
	if inf.null {
		return
	}
	d.convert(path, n, inf, v)
}

// convert stores node n, already resolved and not null, in v.
func (d *decoder) convert(path string, n *yaml.Node, inf *info, v reflect.Value) {
	t := v.Type()
	fail := func(format string, args ...any) {
		inf.bad = true
		d.errs.add(d.file, inf.line, inf.col, path, format, args...)
	}
	switch {
	case t == durationType:
		s, ok := d.scalar(path, n, inf, "a duration such as 10s")
		if !ok {
			return
		}
		if _, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			fail("duration %q needs a unit, e.g. 10s", inf.orig)
			return
		}
		dur, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			fail("bad duration %q: use Go syntax such as 10s, 1m30s or 1h", inf.orig)
			return
		}
		v.SetInt(int64(dur))
	case t == byteSizeType:
		s, ok := d.scalar(path, n, inf, "a size such as 10MiB")
		if !ok {
			return
		}
		b, err := ParseByteSize(s)
		if err != nil {
			fail("%s", strings.ReplaceAll(err.Error(), strconv.Quote(s), strconv.Quote(inf.orig)))
			return
		}
		v.SetInt(int64(b))
	case t == keyPathsType && n.Kind == yaml.ScalarNode:
		// One path may be written without a list: key: id.
		if s, ok := d.scalar(path, n, inf, "a gjson path or a list of them"); ok {
			v.Set(reflect.ValueOf(KeyPaths{s}))
		}
	case t.Kind() == reflect.String:
		if s, ok := d.scalar(path, n, inf, "a string"); ok {
			v.SetString(s)
		}
	case t.Kind() == reflect.Bool:
		s, ok := d.scalar(path, n, inf, "true or false")
		if !ok {
			return
		}
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			fail("expected true or false, got %q", inf.orig)
		}
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		s, ok := d.scalar(path, n, inf, "an integer")
		if !ok {
			return
		}
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || v.OverflowInt(i) {
			fail("expected an integer, got %q", inf.orig)
			return
		}
		v.SetInt(i)
	case t.Kind() == reflect.Float64:
		s, ok := d.scalar(path, n, inf, "a number")
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			fail("expected a number, got %q", inf.orig)
			return
		}
		v.SetFloat(f)
	case t.Kind() == reflect.Pointer:
		elem := reflect.New(t.Elem())
		d.convert(path, n, inf, elem.Elem())
		if !inf.bad {
			v.Set(elem)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			fail("expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if d.budget < 0 {
				break
			}
			d.decodeValue(fmt.Sprintf("%s[%d]", path, i), c, s.Index(i))
		}
		v.Set(s)
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			fail("expected a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMap(t)
		d.eachKey(path, n, func(key string, val *yaml.Node) bool {
			e := reflect.New(t.Elem()).Elem()
			d.decodeValue(join(path, key), val, e)
			m.SetMapIndex(reflect.ValueOf(key), e)
			return true
		})
		v.Set(m)
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			fail("expected a mapping, got %s", kindName(n))
			return
		}
		fields := yamlFields(t)
		d.eachKey(path, n, func(key string, val *yaml.Node) bool {
			i, ok := fields[key]
			if !ok {
				return false
			}
			d.decodeValue(join(path, key), val, v.Field(i))
			return true
		})
	default:
		// Unreachable for the Config types; kept so a new field type fails
		// loudly in tests rather than being skipped.
		fail("unsupported field type %s", t)
	}
}

// eachKey calls fn for each key of mapping n (merge keys applied) and
// reports duplicate keys, keys that are not strings, and keys fn rejects as
// unknown. At the top level, keys starting with "x-" are skipped: they hold
// anchors for reuse, as in Docker Compose.
func (d *decoder) eachKey(path string, n *yaml.Node, fn func(key string, val *yaml.Node) bool) {
	seen := map[string]int{}
	for _, p := range d.pairs(n) {
		if d.budget < 0 {
			return
		}
		k := resolve(p.key)
		if k.Kind != yaml.ScalarNode {
			d.errNode(p.key, path, "mapping keys must be strings, got %s", kindName(k))
			continue
		}
		key := k.Value
		field := join(path, key)
		if first, dup := seen[key]; dup {
			d.errNode(p.key, field, "duplicate key (first at line %d)", first)
			continue
		}
		seen[key] = p.key.Line
		if path == "" && strings.HasPrefix(key, "x-") {
			continue
		}
		if !fn(key, p.val) {
			d.errNode(p.key, field, "unknown field%s", d.suggestField(path, key))
		}
	}
}

// suggestField proposes the known field closest to an unknown key.
func (d *decoder) suggestField(path, key string) string {
	t := typeAt(path)
	if t == nil {
		return ""
	}
	names := yamlFieldNames(t)
	if s := closest(key, names); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	// A key written one level too high, e.g. max_age directly in a sink.
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name := yamlName(f); name != "" && f.Type.Kind() == reflect.Struct {
			if _, ok := yamlFields(f.Type)[key]; ok {
				return fmt.Sprintf(" (it belongs under %q)", name)
			}
		}
	}
	return ""
}

// pairs lists the key/value pairs of mapping n: its own pairs in order, then
// pairs from merge keys (<<) whose keys it does not set itself. Earlier
// merged mappings win over later ones, as YAML specifies. Results are
// memoized so merge chains cannot blow up.
func (d *decoder) pairs(n *yaml.Node) []pair {
	if ps, ok := d.merged[n]; ok {
		return ps
	}
	if d.merging[n] {
		d.errNode(n, "", "merge key (<<) refers to the mapping that contains it")
		return nil
	}
	d.merging[n] = true
	defer delete(d.merging, n)
	var own, merged []pair
	mergeFrom := func(m *yaml.Node) {
		m = resolve(m)
		if m.Kind != yaml.MappingNode {
			d.errNode(m, "", "merge key (<<) needs a mapping or a list of mappings, got %s", kindName(m))
			return
		}
		for _, p := range d.pairs(m) {
			merged = append(merged, p)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			if rv := resolve(v); rv.Kind == yaml.SequenceNode {
				for _, m := range rv.Content {
					mergeFrom(m)
				}
			} else {
				mergeFrom(v)
			}
			continue
		}
		own = append(own, pair{key: k, val: v})
	}
	set := map[string]bool{}
	for _, p := range own {
		if k := resolve(p.key); k.Kind == yaml.ScalarNode {
			set[k.Value] = true
		}
	}
	out := own
	for _, p := range merged {
		k := resolve(p.key)
		if k.Kind == yaml.ScalarNode && set[k.Value] {
			continue
		}
		set[k.Value] = true
		out = append(out, p)
	}
	d.merged[n] = out
	return out
}

// scalar expands the environment references of scalar node n and returns
// its text, recording the original text in inf. It reports and returns false
// when n is not a scalar or expansion fails.
func (d *decoder) scalar(path string, n *yaml.Node, inf *info, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		inf.bad = true
		d.errs.add(d.file, inf.line, inf.col, path, "expected %s, got %s", want, kindName(n))
		return "", false
	}
	inf.orig = n.Value
	s, refs, err := expandEnv(n.Value, d.lookup)
	inf.refs = refs
	if err != nil {
		inf.bad = true
		d.errs.add(d.file, inf.line, inf.col, path, "%v", err)
		return "", false
	}
	return s, true
}

// join appends key to a field path.
func join(path, key string) string {
	if key == "" {
		key = `""`
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows alias nodes to their target.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an empty or null scalar.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// isMerge reports whether key node k is the merge key <<.
func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge"
}

// kindName describes a node's kind for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "nothing"
		}
		return "a string"
	}
	return "an unsupported node"
}

// yamlFields maps the yaml names of struct type t to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

// yamlFieldNames lists the yaml names of struct type t in field order.
func yamlFieldNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// yamlName is a field's yaml key, or "" when YAML cannot set it.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// typeAt is the struct type that the mapping at field path decodes into, or
// nil when it is not a struct (a headers map, for example).
func typeAt(path string) reflect.Type {
	t := reflect.TypeOf(Config{})
	if path == "" {
		return t
	}
	for _, part := range strings.Split(path, ".") {
		name, _, _ := strings.Cut(part, "[")
		if t.Kind() != reflect.Struct {
			return nil
		}
		i, ok := yamlFields(t)[name]
		if !ok {
			return nil
		}
		t = t.Field(i).Type
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	if t.Kind() != reflect.Struct || t == durationType {
		return nil
	}
	return t
}

// closest returns the candidate nearest to key (same words in another case
// or separator, or at most two edits away), or "".
func closest(key string, candidates []string) string {
	norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	best, bestDist := "", 3
	for _, c := range candidates {
		if c == norm {
			return c
		}
		if dist := editDistance(norm, c); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
