// Package sinks delivers pollbridge events to their receivers.
//
// An event becomes one payload (Encode), always the same bytes for the same
// event, so a retried or re-detected change is byte-identical and carries the
// same webhook-id:
//
//	bridge.Event → Encode → {"type", "timestamp", "data"}
//	  → Webhook.Send: Sign (Standard Webhooks), POST, classify the answer
//	  → Stdout.Send: one line per event
//
// Sinks make one attempt per Send; retries with backoff, dead letters and
// metrics belong to the engine, which reads the advice in the returned
// *bridge.DeliveryError. Verify is the receiver's side of Sign, for tests and
// example receivers.
package sinks
