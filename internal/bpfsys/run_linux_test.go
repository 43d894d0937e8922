package bpfsys_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// TestRunFixtures runs every unsigned fixture, and every signed fixture
// without its signature but with its exclusive-program hash, and checks the
// kernel's view of what was created and that the created programs work.
func TestRunFixtures(t *testing.T) {
	requireKernel(t)
	for _, f := range allFixtures(t) {
		t.Run(f.String(), func(t *testing.T) {
			sk := runOK(t, f, request(f, false))
			res := sk.res
			if res.Retval != 0 || res.Step != bpfsys.NoStep {
				t.Errorf("retval %d step %s, want 0 none", res.Retval, res.Step)
			}
			if res.MapHash != sha(f.data) {
				t.Errorf("kernel map hash %x, want SHA-256(data) %x", res.MapHash, sha(f.data))
			}
			insnsSum := sha(f.insns)
			if !bytes.Equal(res.LoaderTag[:], insnsSum[:8]) {
				t.Errorf("loader tag %x, want SHA-256(insns)[:8] %x", res.LoaderTag, insnsSum[:8])
			}
			if res.MapID == 0 || res.LoaderID == 0 || res.MapFD.Int() < 0 || res.LoaderFD.Int() < 0 {
				t.Errorf("ids %d/%d fds %v/%v", res.MapID, res.LoaderID, res.MapFD, res.LoaderFD)
			}
			switch f.name {
			case "counter":
				checkCounter(t, sk)
			case "pair":
				checkPair(t, sk)
			case "rocfg":
				checkRocfg(t, sk)
			}
		})
	}
}

// checkCounter attaches count_sys_enter to sys_enter and sees per_syscall
// count this test's getppid calls (every process is counted: watch_tgid 0).
func checkCounter(t *testing.T, sk skeleton) {
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: sk.progs[0]})
	if err != nil {
		t.Fatal(err)
	}
	const calls = 100
	for range calls {
		unix.Getppid()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := sk.maps[0].Lookup(uint32(unix.SYS_GETPPID), &n); err != nil {
		t.Fatal(err)
	}
	if n < calls {
		t.Errorf("per_syscall[getppid] = %d, want >= %d", n, calls)
	}
}

// checkPair attaches pair_enter and pair_exit and sees flows[our tgid]
// count entries and exits.
func checkPair(t *testing.T, sk skeleton) {
	for i, tp := range []string{"sys_enter", "sys_exit"} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: sk.progs[i]})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	const calls = 50
	for range calls {
		unix.Getppid()
	}
	var v struct{ Entered, Exited uint64 }
	if err := sk.maps[0].Lookup(uint32(os.Getpid()), &v); err != nil {
		t.Fatal(err)
	}
	if v.Entered < calls || v.Exited < calls {
		t.Errorf("flows[self] = %+v, want both >= %d", v, calls)
	}
}

// checkRocfg runs the socket filter: snap_len 96 and drop_below 20 come from
// the hashed .rodata in the blob. BPF_PROG_TEST_RUN builds the skb from an
// Ethernet frame and pulls the 14-byte header (eth_type_trans), so a frame
// of n+14 bytes gives skb->len n.
func checkRocfg(t *testing.T, sk skeleton) {
	const ethHdrLen = 14
	for _, c := range []struct{ in, want uint32 }{{126, 96}, {46, 46}, {16, 0}} {
		ret, err := sk.progs[0].Run(&ebpf.RunOptions{Data: make([]byte, c.in+ethHdrLen)})
		if err != nil {
			t.Fatal(err)
		}
		if ret != c.want {
			t.Errorf("skb->len %d: filter returned %d, want %d", c.in, ret, c.want)
		}
	}
	for key, want := range []uint64{2, 1} { // kept, dropped
		var n uint64
		if err := sk.maps[0].Lookup(uint32(key), &n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("verdicts[%d] = %d, want %d", key, n, want)
		}
	}
}

// TestSignedLoadWithSignature sends the real signatures. This kernel has no
// CONFIG_SYSTEM_DATA_VERIFICATION: every signed load is EOPNOTSUPP at
// ProgLoad, and ProbeSignedLoad agrees. The keyring and size checks that run
// before the stub still answer, which proves keyring_id and signature_size
// sit where the kernel reads them.
func TestSignedLoadWithSignature(t *testing.T) {
	requireKernel(t)
	support, err := bpfsys.ProbeSignedLoad(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := kernelSignatureSupport(t); support != want {
		t.Fatalf("ProbeSignedLoad = %s, /proc/kallsyms says %s", support, want)
	}
	if support != bpfsys.SignaturesUnsupported {
		t.Skipf("kernel checks signatures (%s): the EOPNOTSUPP expectations below are for kernels that do not", support)
	}
	for _, name := range []string{"counter", "pair", "rocfg"} {
		f := loadFixture(t, name, true)
		t.Run(f.String(), func(t *testing.T) {
			cases := []struct {
				what    string
				keyring int32
				sig     []byte
				want    unix.Errno
			}{
				{"builtin keyring", 0, f.sig, unix.EOPNOTSUPP},
				{"session keyring", unix.KEY_SPEC_SESSION_KEYRING, f.sig, unix.EOPNOTSUPP},
				{"no such key", 12345, f.sig, unix.EINVAL},
				{"signature over 8192 bytes", 0, make([]byte, 8193), unix.EINVAL},
			}
			for _, c := range cases {
				req := request(f, true)
				req.KeyringID, req.Signature = c.keyring, c.sig
				res, err := bpfsys.Run(context.Background(), req, nil)
				var se *bpfsys.SyscallError
				if !errors.As(err, &se) || !errors.Is(err, c.want) || se.Step != bpfsys.ProgLoad || se.Cmd != bpfsys.CmdProgLoad {
					t.Errorf("%s: err %v, want %v at prog-load", c.what, err, c.want)
					continue
				}
				if res.Step != bpfsys.ProgLoad || res.MapFD != nil || res.LoaderFD != nil {
					t.Errorf("%s: step %s fds %v %v", c.what, res.Step, res.MapFD, res.LoaderFD)
				}
			}
		})
	}
}

// kernelSignatureSupport reads the ground truth from /proc/kallsyms: the
// kernel verifies PKCS#7 signatures only if verify_pkcs7_signature is built in.
func kernelSignatureSupport(t *testing.T) bpfsys.SignatureSupport {
	syms, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(syms, []byte(" bpf_verify_pkcs7_signature")) {
		return bpfsys.SignaturesUnsupported
	}
	for line := range strings.Lines(string(syms)) {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == "verify_pkcs7_signature" {
			return bpfsys.SignaturesChecked
		}
	}
	return bpfsys.SignaturesUnsupported
}
