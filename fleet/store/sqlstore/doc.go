// Package sqlstore implements store.Store on database/sql for both
// engines: one schema and one set of statements, with the few differences
// between SQLite and PostgreSQL (types, placeholders, row locks, the
// migration lock) in a Dialect. Times are Unix milliseconds.
//
// Leases: Claim picks due agents whose lease has run out and leases them
// in one statement; on PostgreSQL the pick locks its rows FOR UPDATE SKIP
// LOCKED, so replicas claiming at once split the due agents between them.
// SQLite serialises writers (one write connection), which gives the same
// guarantee to the one process that opens the file.
package sqlstore
