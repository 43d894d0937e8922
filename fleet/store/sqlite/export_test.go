package sqlite

// Dialect is the engine's dialect, for the upgrade test.
var Dialect = dialect
