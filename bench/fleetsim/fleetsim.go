// Package fleetsim is a LOAD GENERATOR, for benchmarks only: one process
// that answers the bpfattest agent protocol (AttestationService: Identity
// and Quote) for many simulated hosts at once, so that a fleet service can
// be measured against more agents than real bpfattestd processes (each
// with its own TPM simulator) can number on one machine. Nothing in it
// attests anything: its "TPMs" are software ECDSA P-256 keys. No
// production binary may link it (internal/archtest checks).
//
// What it produces is real TPM 2.0 structures, so that the verifier does
// all of its work: per host an AK public area (TPMT_PUBLIC of a restricted
// ECDSA P-256 signing key, the agent's own template), quotes as
// TPMS_ATTEST marshalled with go-tpm's tpm2 package (magic, quote type,
// qualifying data derived from the verifier's nonce, clock information,
// the PCR selection and digest), TPMT_SIGNATURE (ECDSA, SHA-256) over
// them, and an event log of canonical CEL records that replays to the
// quoted PCR: a boot header, then, every round, an unmeasured program
// appearing and leaving (two records), so each host's log grows between
// rounds as a real agent's does on a busy kernel.
//
// One TLS listener serves every host; a host is the server name the
// verifier asks for (SNI), which its registration names (server_name).
// The connection count, not the listener count, then grows with the
// fleet.
package fleetsim

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-tpm/tpm2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/measure"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// Domain is the DNS suffix of the simulated hosts' server names.
const Domain = "fleetsim.test"

// pcr is the simulated agents' PCR (the agent's default).
const pcr = 14

// bootPCRs: the simulated hosts quote PCRs 0 to bootPCRs-1 besides pcr,
// as an agent does by default (attest.DefaultBootPCRs).
const bootPCRs = 10

// Sim serves many simulated hosts.
type Sim struct {
	hosts map[string]*host // by server name; read-only after New
	start time.Time
	cert  tls.Certificate
	caPEM []byte
	srv   *grpc.Server

	Handshakes atomic.Int64 // TLS handshakes served
	Quotes     atomic.Int64 // quotes answered
}

// host is one simulated agent.
type host struct {
	name     string
	key      *ecdsa.PrivateKey
	akPublic []byte
	akName   []byte
	bootID   string

	mu      sync.Mutex
	records [][]byte // encoded CEL records, by number; guarded by mu
	value   []byte   // the PCR's SHA-256 value; guarded by mu
	nextID  uint32   // guarded by mu
}

// Name is the server name of host i.
func Name(i int) string { return fmt.Sprintf("h%05d.%s", i, Domain) }

// New makes n hosts, each with its own AK and a log holding its boot
// header.
func New(n int) (*Sim, error) {
	s := &Sim{hosts: make(map[string]*host, n), start: time.Now()}
	for i := range n {
		h, err := newHost(Name(i), s.start)
		if err != nil {
			return nil, err
		}
		s.hosts[h.name] = h
	}
	if err := s.makeCert(); err != nil {
		return nil, err
	}
	return s, nil
}

func newHost(name string, start time.Time) (*host, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	point, err := key.PublicKey.Bytes() // 0x04 ‖ X ‖ Y
	if err != nil {
		return nil, err
	}
	x, y := point[1:33], point[33:65]
	pub := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
			NoDA: true, Restricted: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: y}}),
	}
	h := &host{name: name, key: key, akPublic: tpm2.Marshal(&pub), value: make([]byte, 32), nextID: 1000}
	sum := sha256.Sum256(h.akPublic)
	h.akName = append([]byte{0, 0x0b}, sum[:]...)
	var id [16]byte
	rand.Read(id[:])
	h.bootID = fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:])
	hdr := cel.BootInfo{BootID: h.bootID, ResetCount: 1, Clock: 0, PCR: pcr, Start: map[crypto.Hash][]byte{crypto.SHA256: make([]byte, 32)}}
	content, err := hdr.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if err := h.append(cel.BootHeader, content); err != nil {
		return nil, err
	}
	return h, nil
}

// append adds a record and extends the PCR value with it (caller holds mu
// or owns h).
func (h *host) append(t cel.ContentType, content []byte) error {
	rec, err := cel.NewRecord(uint64(len(h.records)), pcr, []crypto.Hash{crypto.SHA256}, t, content)
	if err != nil {
		return err
	}
	b, err := rec.MarshalBinary()
	if err != nil {
		return err
	}
	d, _ := rec.Digest(crypto.SHA256)
	x := sha256.New()
	x.Write(h.value)
	x.Write(d)
	h.value = x.Sum(nil)
	h.records = append(h.records, b)
	return nil
}

// churn appends one round's records: a program appears in the kernel
// without a measured load, and leaves it.
func (h *host) churn(now uint64) error {
	id := h.nextID
	h.nextID++
	var tag [8]byte
	tag[0], tag[1] = byte(id>>8), byte(id)
	kp := measure.KernelProgram{Discovery: measure.DiscoveredObserved, ID: id, Type: 1, Name: "sim_filter", Tag: tag, LoadTimeNS: now}
	b, err := kp.MarshalBinary()
	if err != nil {
		return err
	}
	rn := uint64(len(h.records))
	if err := h.append(cel.BPFUnmeasured, b); err != nil {
		return err
	}
	u := measure.Unloaded{ID: id, Tag: tag, Name: "sim_filter", Record: rn}
	if b, err = u.MarshalBinary(); err != nil {
		return err
	}
	return h.append(cel.BPFUnloaded, b)
}

// quote answers one request: the log grows by a round, then the PCR is
// "quoted" over the nonce.
func (h *host) quote(nonce []byte, from uint64, clock uint64) (*pb.Evidence, error) {
	if err := evidence.CheckNonce(nonce); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.churn(clock * 1e6); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if from > uint64(len(h.records)) {
		return nil, status.Errorf(codes.InvalidArgument, "from_record %d past the log's %d records", from, len(h.records))
	}
	var log []byte
	for _, r := range h.records[from:] {
		log = append(log, r...)
	}
	// The quote covers the boot PCRs a verifier asks for by default (0 to
	// 9, here never extended: zeros) and the agent's PCR, in that order;
	// no firmware log is served, so no boot chain is claimed.
	pcrs := make([]*pb.PCRValue, 0, bootPCRs+1)
	all := sha256.New()
	for i := range bootPCRs {
		pcrs = append(pcrs, &pb.PCRValue{HashAlg: uint32(tpm2.TPMAlgSHA256), Index: uint32(i), Digest: make([]byte, 32)})
		all.Write(make([]byte, 32))
	}
	pcrs = append(pcrs, &pb.PCRValue{HashAlg: uint32(tpm2.TPMAlgSHA256), Index: pcr, Digest: append([]byte(nil), h.value...)})
	all.Write(h.value)
	digest := all.Sum(nil)
	att := tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: h.akName},
		ExtraData:       tpm2.TPM2BData{Buffer: evidence.QualifyingData(nonce)},
		ClockInfo:       tpm2.TPMSClockInfo{Clock: clock, ResetCount: 1, Safe: true},
		FirmwareVersion: 0x2024,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0xff, 0x03 | 1<<(pcr-8), 0}}}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: digest},
		}),
	}
	attBytes := tpm2.Marshal(&att)
	sum := sha256.Sum256(attBytes)
	r, s, err := ecdsa.Sign(rand.Reader, h.key, sum[:])
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	sig := tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
		Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: r.FillBytes(make([]byte, 32))},
		SignatureS: tpm2.TPM2BECCParameter{Buffer: s.FillBytes(make([]byte, 32))}})}
	return &pb.Evidence{AkPublic: h.akPublic, Attest: attBytes, Signature: tpm2.Marshal(&sig), Pcr: pcr,
		Pcrs: pcrs,
		Log:  log, FromRecord: from, Proof: &pb.InclusionProof{Index: 0, Size: 1}}, nil
}

// makeCert makes the listener's CA and its certificate for *.Domain.
func (s *Sim) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleetsim load generator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		DNSNames: []string{"*." + Domain}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	s.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return nil
}

// CAPEM is the certificate verifiers must trust (the service's
// --agent-ca).
func (s *Sim) CAPEM() []byte { return s.caPEM }

// Serve answers on ln until ctx is done.
func (s *Sim) Serve(ctx context.Context, ln net.Listener) error {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{s.cert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			s.Handshakes.Add(1)
			if _, ok := s.hosts[hello.ServerName]; !ok {
				return nil, fmt.Errorf("no simulated host %q", hello.ServerName)
			}
			return nil, nil
		}}
	s.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)), grpc.ReadBufferSize(16<<10), grpc.WriteBufferSize(16<<10))
	pb.RegisterAttestationServiceServer(s.srv, &service{sim: s})
	go func() {
		<-ctx.Done()
		s.srv.Stop()
	}()
	return s.srv.Serve(ln)
}

type service struct {
	pb.UnimplementedAttestationServiceServer
	sim *Sim
}

func (v *service) host(ctx context.Context) (*host, error) {
	p, ok := peer.FromContext(ctx)
	if ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			if h, ok := v.sim.hosts[strings.ToLower(ti.State.ServerName)]; ok {
				return h, nil
			}
		}
	}
	return nil, status.Error(codes.NotFound, "no simulated host for this connection's server name")
}

func (v *service) Identity(ctx context.Context, _ *pb.IdentityRequest) (*pb.Identity, error) {
	h, err := v.host(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.Identity{AkPublic: h.akPublic, AkAlgorithm: "ecc", Pcr: pcr, Banks: []uint32{uint32(tpm2.TPMAlgSHA256)}, BootId: h.bootID,
		Clock: &pb.ClockInfo{Clock: v.sim.clock(), ResetCount: 1, Safe: true}}, nil
}

func (v *service) Quote(ctx context.Context, req *pb.QuoteRequest) (*pb.Evidence, error) {
	h, err := v.host(ctx)
	if err != nil {
		return nil, err
	}
	ev, err := h.quote(req.GetNonce(), req.GetFromRecord(), v.sim.clock())
	if err == nil {
		v.sim.Quotes.Add(1)
	}
	return ev, err
}

// clock is the simulated TPMs' clock: milliseconds since New.
func (s *Sim) clock() uint64 { return uint64(time.Since(s.start).Milliseconds()) + 1 }
