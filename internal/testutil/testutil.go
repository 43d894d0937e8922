// Package testutil holds helpers shared by the project's tests: the strict
// switch that turns environment skips into failures on CI, root checks, and
// access to the real light-skeleton fixtures.
//
// It is imported only from _test.go files; no binary links it.
package testutil

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// StrictEnv names the environment variable that .ci/run sets to "1". When it
// is set, a test that would skip because the machine lacks root, a kernel
// feature or an external tool fails instead, so a regression cannot hide as
// a skip on the machine where everything is known to be present.
const StrictEnv = "BPFATTEST_STRICT"

// Strict reports whether skips for missing environment must fail.
func Strict() bool { return os.Getenv(StrictEnv) == "1" }

// SkipEnv skips the test with the reason, or fails it when Strict is set.
func SkipEnv(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if Strict() {
		tb.Fatalf("environment requirement missing under "+StrictEnv+"=1: "+format, args...)
	}
	tb.Skipf(format, args...)
}

// RequireRoot skips (or, under Strict, fails) a test that needs root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		SkipEnv(tb, "needs root (euid %d)", os.Geteuid())
	}
}

// RequireTool skips (or fails under Strict) when an external program is not
// on PATH, and returns its path otherwise.
func RequireTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := lookPath(name)
	if err != nil {
		SkipEnv(tb, "needs %s on PATH: %v", name, err)
	}
	return p
}

// RepoRoot returns the module root, found from this source file's location.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("cannot locate testutil source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// LskelDir returns the directory holding the real bpftool-generated light
// skeleton fixtures (headers/, keys/, obj/, manifest.json).
func LskelDir(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(RepoRoot(tb), "measure", "testdata", "lskel")
}

// LskelFile returns the path of a file inside the fixture directory.
func LskelFile(tb testing.TB, rel string) string {
	tb.Helper()
	return filepath.Join(LskelDir(tb), filepath.FromSlash(rel))
}

// PostgresEnv names the environment variable holding the connection
// string (a postgres:// URL or keyword/value DSN) of a throwaway
// PostgreSQL server where tests may create and drop schemas. .ci/run
// starts one and sets it.
const PostgresEnv = "BPFATTEST_POSTGRES"

// Postgres returns the throwaway server's connection string, or skips the
// test (fails it under Strict) when none is given.
func Postgres(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		SkipEnv(tb, "needs a PostgreSQL server: set %s (.ci/run starts one)", PostgresEnv)
	}
	return dsn
}
