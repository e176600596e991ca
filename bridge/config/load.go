package config

import (
	"fmt"
	"os"
	"reflect"
)

// Load reads the file at path and returns its configuration, as Parse does.
// lookupEnv is os.LookupEnv in production; tests pass their own. A file that
// cannot be read is reported as an *Errors too, with no line.
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Errors{{File: path, Msg: fmt.Sprintf("read config: %v", err)}}
	}
	return Parse(path, data, lookupEnv)
}

// Parse decodes the YAML configuration in data; path names the file in
// messages and is stored in Config.Path.
//
// In every scalar value, ${VAR} is replaced by the variable's value from
// lookupEnv (an error when it is not set), ${VAR:-default} by the default
// when the variable is unset or empty, and $$ by a single $; keys are not
// expanded, and a nil lookupEnv is an empty environment. Decoding is strict:
// unknown and duplicate keys, values of the wrong type and durations without
// a unit are errors. Top-level keys starting with "x-" are ignored so they
// can hold YAML anchors (&name) for reuse with aliases and merge keys (<<).
// Defaults are then applied to every setting left out (see the Default
// constants; a source without sinks gets every sink) and every field is
// validated.
//
// On any problem Parse returns a nil Config and an *Errors listing every
// problem found, sorted by line. Messages quote values as written, never
// expanded, and never quote secrets, URLs or header values.
func Parse(path string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	d := newDecoder(path, lookupEnv)
	root := d.parseDocument(data)
	if root == nil {
		return nil, d.result()
	}
	var c Config
	d.decodeValue("", root, reflect.ValueOf(&c).Elem())
	d.finish(&c)
	if err := d.result(); err != nil {
		return nil, err
	}
	c.Path = path
	return &c, nil
}

// result returns the recorded problems as a sorted *Errors, or nil.
func (d *decoder) result() error {
	if len(d.errs) == 0 {
		return nil
	}
	d.hideSecrets()
	d.errs.sort()
	errs := d.errs
	return &errs
}
