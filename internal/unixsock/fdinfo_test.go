package unixsock

import (
	"errors"
	"os"
	"testing"
)

func TestParseFdinfoPID(t *testing.T) {
	real, err := os.ReadFile("testdata/pidfd-fdinfo.txt")
	if err != nil {
		t.Fatal(err)
	}
	if pid, err := parseFdinfoPID(real); err != nil || pid != 15380 {
		t.Errorf("captured fdinfo: pid %d, %v; want 15380", pid, err)
	}
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"pos:\t0\nPid:\t-1\nNSpid:\t-1\n", ErrExited},
		{"pos:\t0\nPid:\t0\n", ErrExited},
	} {
		if _, err := parseFdinfoPID([]byte(tc.in)); !errors.Is(err, tc.want) {
			t.Errorf("%q: %v, want %v", tc.in, err, tc.want)
		}
	}
	for _, in := range []string{"", "pos:\t0\n", "Pid:\tx\n", "Pid:\t99999999999\n", "Pid:"} {
		if pid, err := parseFdinfoPID([]byte(in)); err == nil {
			t.Errorf("%q: pid %d, want an error", in, pid)
		}
	}
}

func FuzzParseFdinfoPID(f *testing.F) {
	real, err := os.ReadFile("testdata/pidfd-fdinfo.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real)
	f.Add([]byte("Pid:\t-1\n"))
	f.Add([]byte("Pid: 1\nPid: 2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pid, err := parseFdinfoPID(b)
		if err == nil && pid == 0 {
			t.Fatalf("%q: pid 0 without an error", b)
		}
	})
}
