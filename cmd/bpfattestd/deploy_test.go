package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// TestDeployFiles checks that what deploy/ ships starts this daemon: the
// systemd unit's command line with its JSON configuration, and the
// Kubernetes DaemonSet's arguments with its ConfigMap, parse and pass the
// daemon's own checks; the probes reach the health listener the
// configuration opens; the socket unit names its descriptor "local" and
// gives the socket the configuration's group; the image tag is pinned.
func TestDeployFiles(t *testing.T) {
	root := testutil.RepoRoot(t)
	deploy := filepath.Join(root, "deploy")

	t.Run("systemd", func(t *testing.T) {
		unit := readUnit(t, filepath.Join(deploy, "systemd", "bpfattestd.service"))
		args := strings.Fields(unit["ExecStart"][0])[1:]
		for i, a := range args {
			if a == "--config" {
				args[i+1] = filepath.Join(deploy, "systemd", "bpfattestd.json")
			}
		}
		cfg := mustConfig(t, args)
		if cfg.TPM != "/dev/tpmrm0" || cfg.LocalGroup == "" {
			t.Errorf("tpm %q, local group %q", cfg.TPM, cfg.LocalGroup)
		}
		sock := readUnit(t, filepath.Join(deploy, "systemd", "bpfattestd.socket"))
		if got := sock["FileDescriptorName"]; len(got) != 1 || got[0] != "local" {
			t.Errorf("FileDescriptorName %v, want local", got)
		}
		if got := sock["ListenStream"]; len(got) != 1 || got[0] != cfg.LocalSocket {
			t.Errorf("socket unit listens on %v, configuration names %s", got, cfg.LocalSocket)
		}
		if got := sock["SocketGroup"]; len(got) != 1 || got[0] != cfg.LocalGroup {
			t.Errorf("SocketGroup %v, configuration's local_group %q", got, cfg.LocalGroup)
		}
		if got := unit["Type"]; len(got) != 1 || got[0] != "notify" {
			t.Errorf("Type=%v, want notify", got)
		}
	})

	t.Run("kubernetes", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(deploy, "kubernetes", "daemonset.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var configJSON string
		var container struct {
			Image          string
			Args           []string
			ReadinessProbe struct {
				HTTPGet probe `yaml:"httpGet"`
			} `yaml:"readinessProbe"`
			LivenessProbe struct {
				HTTPGet probe `yaml:"httpGet"`
			} `yaml:"livenessProbe"`
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc struct {
				Kind string
				Data map[string]string
				Spec struct {
					Template struct {
						Spec struct {
							HostNetwork bool `yaml:"hostNetwork"`
							Containers  []yaml.Node
						}
					}
				}
			}
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			switch doc.Kind {
			case "ConfigMap":
				configJSON = doc.Data["bpfattestd.json"]
			case "DaemonSet":
				if len(doc.Spec.Template.Spec.Containers) != 1 || !doc.Spec.Template.Spec.HostNetwork {
					t.Fatal("want one container on the host network")
				}
				if err := doc.Spec.Template.Spec.Containers[0].Decode(&container); err != nil {
					t.Fatal(err)
				}
			}
		}
		if tag := container.Image[strings.LastIndexByte(container.Image, ':')+1:]; tag == "latest" || strings.Count(tag, ".") != 2 {
			t.Errorf("image %s: want a pinned release tag vX.Y.Z", container.Image)
		}
		file := filepath.Join(t.TempDir(), "bpfattestd.json")
		if err := os.WriteFile(file, []byte(configJSON), 0o600); err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, a := range container.Args {
			a = strings.ReplaceAll(a, "$(NODE_IP)", "192.0.2.10")
			if strings.HasPrefix(a, "--config=") {
				a = "--config=" + file
			}
			args = append(args, a)
		}
		cfg := mustConfig(t, args)
		if cfg.MetricsTLSCert == "" || cfg.MetricsClientCA == "" {
			t.Error("metrics on the node's address without mutual TLS")
		}
		host, port, err := net.SplitHostPort(cfg.Health)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("health listener %q: want loopback", cfg.Health)
		}
		for name, p := range map[string]probe{"readiness": container.ReadinessProbe.HTTPGet, "liveness": container.LivenessProbe.HTTPGet} {
			if p.Host != host || strconv.Itoa(p.Port) != port {
				t.Errorf("%s probe %s:%d, health listener %s", name, p.Host, p.Port, cfg.Health)
			}
		}
		if container.ReadinessProbe.HTTPGet.Path != "/readyz" || container.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("probe paths %q, %q", container.ReadinessProbe.HTTPGet.Path, container.LivenessProbe.HTTPGet.Path)
		}
	})
}

type probe struct {
	Host string
	Port int
	Path string
}

// mustConfig parses args as the daemon does and runs its checks.
func mustConfig(t *testing.T, args []string) config {
	t.Helper()
	cfg, err := parseConfig(args, io.Discard)
	if err == nil {
		err = cfg.check()
	}
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return cfg
}

// readUnit reads the Key=value lines of a systemd unit file (comments and
// section headers dropped; a key given twice keeps both values).
func readUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}
