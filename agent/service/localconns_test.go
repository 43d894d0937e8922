package service

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestLocalConnsBudget: a uid holds at most MaxLocalConnsPerPeer local
// connections; one more is closed at its handshake (its call fails,
// nothing was read of its executable), and once a connection of the uid
// closes, a new one is served. Root is held to its own share.
func TestLocalConnsBudget(t *testing.T) {
	s := newTestServer(t, Options{MaxLocalConnsPerPeer: 2})
	ln, err := ListenUnix(filepath.Join(t.TempDir(), "agent.sock"), -1)
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeLocal(ln)
	t.Cleanup(func() { s.local.Stop() })
	dial := func() (*grpc.ClientConn, error) {
		conn, err := grpc.NewClient("unix:"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = pb.NewLocalServiceClient(conn).Status(t.Context(), &pb.StatusRequest{})
		return conn, err
	}
	first, err := dial()
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	second, err := dial()
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	defer second.Close()
	third, err := dial()
	if err == nil {
		t.Fatal("a third connection of the uid was served, want it closed at its handshake")
	}
	third.Close()
	if n := s.localConns.inUse(); n != 2 {
		t.Errorf("%d local connections held, want 2", n)
	}
	if s.localConns.refused.Load() == 0 {
		t.Error("no refusal counted")
	}
	first.Close()
	for s.localConns.inUse() != 1 {
		select {
		case <-t.Context().Done():
			t.Fatal("the closed connection's share was not given back")
		case <-time.After(10 * time.Millisecond):
		}
	}
	again, err := dial()
	if err != nil {
		t.Fatalf("a connection after one closed: %v", err)
	}
	again.Close()
}

// TestExeCache: the cached hash of a file is its SHA-256; a file written
// in place (same size, modification time set back) is hashed again, not
// answered from the cache; the cache keeps at most its bound.
func TestExeCache(t *testing.T) {
	c := newExeCache(2)
	path := filepath.Join(t.TempDir(), "prog")
	content := bytes.Repeat([]byte("program "), 4096)
	if err := os.WriteFile(path, content, 0o755); err != nil {
		t.Fatal(err)
	}
	hashOf := func() []byte {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return c.hash(f)
	}
	want := sha256.Sum256(content)
	for i := range 2 {
		if got := hashOf(); !bytes.Equal(got, want[:]) {
			t.Fatalf("read %d: %x, want %x", i, got, want)
		}
	}
	if c.len() != 1 {
		t.Fatalf("%d entries after hashing one file twice, want 1", c.len())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Clone(content)
	changed[0] = 'P'
	if err := os.WriteFile(path, changed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	want = sha256.Sum256(changed)
	if got := hashOf(); !bytes.Equal(got, want[:]) {
		t.Fatalf("after an in-place write with the old mtime: %x, want %x (a stale cached hash)", got, want)
	}
	for i := range 3 {
		p := filepath.Join(t.TempDir(), "other")
		if err := os.WriteFile(p, []byte{byte(i)}, 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		c.hash(f)
		f.Close()
	}
	if c.len() != 2 {
		t.Errorf("%d entries, want the bound 2", c.len())
	}
}
