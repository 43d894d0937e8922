// Package ratelimit is a token bucket per client, with a bounded table of
// clients: the agent's request rates (quotes, identity, loads, refusal
// records) per peer and in total. Standard library only.
package ratelimit
