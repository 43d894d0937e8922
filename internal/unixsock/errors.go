package unixsock

import "errors"

// ErrNotSocket: the file at the socket's path is not a socket (it was
// replaced, or is a symbolic link).
var ErrNotSocket = errors.New("not a socket")
