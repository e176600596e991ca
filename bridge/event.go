package bridge

import (
	"errors"
	"fmt"

	"github.com/tidwall/gjson"
)

// decodeEvent reads an event as Commit stores it (json.Marshal of Event).
// For every payload json.Marshal writes it gives what json.Unmarshal gives,
// in a fraction of the time: the dispatcher decodes one per attempt, and
// encoding/json's reflection was an eighth of a drain's CPU. Keys match
// exactly (json.Unmarshal would also take "ID" for "id"), a key given twice
// keeps its last value, and a payload that is not a JSON object is an error.
func decodeEvent(payload []byte) (Event, error) {
	var ev Event
	if !gjson.ValidBytes(payload) {
		return ev, errors.New("not valid JSON")
	}
	root := gjson.ParseBytes(payload)
	if !root.IsObject() {
		return ev, errors.New("not a JSON object")
	}
	var err error
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "id":
			err = decodeString(&ev.ID, k.Str, v)
		case "type":
			err = decodeString(&ev.Type, k.Str, v)
		case "source":
			err = decodeString(&ev.Source, k.Str, v)
		case "key":
			err = decodeString(&ev.Key, k.Str, v)
		case "timestamp":
			if v.Type != gjson.Null {
				err = ev.Time.UnmarshalJSON([]byte(v.Raw))
			}
		case "item":
			ev.Item = []byte(v.Raw)
		case "previous":
			ev.Previous = []byte(v.Raw)
		case "changes":
			ev.Changes, err = decodeChanges(v)
		}
		return err == nil
	})
	return ev, err
}

// decodeString sets *dst to v's text; null leaves it as it is, as
// json.Unmarshal does.
func decodeString(dst *string, field string, v gjson.Result) error {
	switch v.Type {
	case gjson.String:
		*dst = v.Str
	case gjson.Null:
	default:
		return fmt.Errorf("field %q: %s is not a string", field, v.Type)
	}
	return nil
}

// decodeChanges reads an event's "changes" array (null: none).
func decodeChanges(v gjson.Result) ([]Change, error) {
	if v.Type == gjson.Null {
		return nil, nil
	}
	if !v.IsArray() {
		return nil, fmt.Errorf("field \"changes\": %s is not an array", v.Type)
	}
	changes := make([]Change, 0, 4)
	var err error
	v.ForEach(func(_, c gjson.Result) bool {
		if !c.IsObject() {
			err = errors.New("field \"changes\": an element is not an object")
			return false
		}
		var ch Change
		c.ForEach(func(k, f gjson.Result) bool {
			switch k.Str {
			case "op":
				err = decodeString(&ch.Op, "changes.op", f)
			case "path":
				err = decodeString(&ch.Path, "changes.path", f)
			case "old":
				ch.Old = []byte(f.Raw)
			case "new":
				ch.New = []byte(f.Raw)
			}
			return err == nil
		})
		changes = append(changes, ch)
		return err == nil
	})
	return changes, err
}
