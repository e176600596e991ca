// Package sinks delivers pollbridge events to their receivers.
//
// An event becomes one payload, always the same bytes for the same event, so
// a retried or re-detected change is byte-identical and carries the same
// webhook-id. A webhook sink's Format chooses the payload: standard (Encode:
// {"type", "timestamp", "data"}), cloudevents (a CloudEvents 1.0 envelope,
// or ce-* headers and the data object) or template (a text/template body):
//
//	bridge.Event → Format.Render → body + content-type (+ ce-* headers)
//	  → Webhook.Send: Sign the body as sent (Standard Webhooks), POST,
//	    classify the answer
//	bridge.Event → Encode → Stdout.Send: one line per event (always standard)
//
// Sinks make one attempt per Send; retries with backoff, dead letters and
// metrics belong to the engine, which reads the advice in the returned
// *bridge.DeliveryError. Verify is the receiver's side of Sign, for tests and
// example receivers.
package sinks
