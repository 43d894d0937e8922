// Package api serves the fleet service to operators and agents: the
// FleetService gRPC API and the same operations as JSON over HTTP
// (/api/v1/...), the dashboard, on one TLS listener; and PushService, where
// push agents fetch challenges and upload evidence, on another.
//
// Who may do what is decided by the client certificate (Roles): readers
// see summaries, agents, verdicts, history and policies; admins also
// register and delete agents and store policies. A push agent is named by
// its client certificate's SHA-256, registered with the agent, and may
// only answer its own challenges.
//
// Every request body is bounded (MaxBodySize, gRPC's message limit),
// decoded strictly, and validated by package fleet before anything is
// stored.
package api
