// Package archtest holds no code; its test enforces the project's import
// graph (docs/architecture.md) with `go list -deps`, so a forbidden import
// fails the build's tests rather than a review.
package archtest
