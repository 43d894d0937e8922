// Package store is the fleet service's memory, behind one interface with
// two engines: an embedded SQLite file (package sqlite, the default, one
// service node) and PostgreSQL (package postgres, shared by service
// replicas). Both pass the one suite in package storetest.
//
// Per agent it keeps the registration (mode, address, TLS identity,
// policy), the pinned attestation key, the verifier's attest.State bytes
// with a version that Complete advances by compare-and-swap, the next due
// time, the consecutive failures and a lease. Per agent also the latest
// verdict, and a history row per verification (transitions keep their
// verdict); webhook deliveries wait in an outbox written in the same
// transaction as the transition they announce.
//
// Trust: the store holds the verifier's own memory (pins and States); it
// must be writable by the service only. Nothing read from it is checked
// again here: attest.State decoding checks a State's shape when the
// service uses it.
package store
