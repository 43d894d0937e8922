package verifier

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/bpfattest/bpfattest/internal/boundedfile"
)

// inventoryHost is one host of an inventory: the host's name, its agent's
// address, and its verifier state file and AK pin.
type inventoryHost struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	State   string `yaml:"state"` // default: STATE-DIR/NAME.json
	AK      string `yaml:"ak"`    // TPMT_PUBLIC file to pin on first contact
}

// inventoryYAML is the YAML form of an inventory.
type inventoryYAML struct {
	Hosts []inventoryHost `yaml:"hosts"`
}

// MaxInventorySize bounds an inventory file.
const MaxInventorySize = 16 << 20

// hostName is what a host name may be: it names the state file.
var hostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

// ParseInventory reads an inventory (the one format of bpfattest scan
// and the fleet service): YAML with a top-level "hosts:" list
// of {name, address, state, ak}, or lines of "NAME ADDRESS [state=FILE]
// [ak=FILE]" with # comments. Relative state and ak paths are relative to
// the inventory's directory; hosts without a state file get
// STATE-DIR/NAME.json when stateDir is set. Errors name the line.
func ParseInventory(path, stateDir string) ([]Target, error) {
	b, err := boundedfile.ReadFile(path, MaxInventorySize)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	var hosts []inventoryHost
	if isYAMLInventory(b) {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		var inv inventoryYAML
		if err := dec.Decode(&inv); err != nil {
			return nil, fmt.Errorf("inventory %s: %w", path, err)
		}
		hosts = inv.Hosts
	} else if hosts, err = parseInventoryLines(b); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("inventory %s: no hosts", path)
	}
	base := filepath.Dir(path)
	seen := map[string]bool{}
	for i := range hosts {
		h := &hosts[i]
		switch {
		case !hostName.MatchString(h.Name):
			return nil, fmt.Errorf("inventory %s: host %d: name %q: letters, digits, '.', '_' and '-' only", path, i+1, h.Name)
		case h.Address == "":
			return nil, fmt.Errorf("inventory %s: host %s: no address", path, h.Name)
		case seen[h.Name]:
			return nil, fmt.Errorf("inventory %s: host %s listed twice", path, h.Name)
		}
		seen[h.Name] = true
		if h.State == "" && stateDir != "" {
			h.State = filepath.Join(stateDir, h.Name+".json")
		} else if h.State != "" && !filepath.IsAbs(h.State) {
			h.State = filepath.Join(base, h.State)
		}
		if h.AK != "" && !filepath.IsAbs(h.AK) {
			h.AK = filepath.Join(base, h.AK)
		}
	}
	targets := make([]Target, len(hosts))
	for i, h := range hosts {
		targets[i] = Target(h)
	}
	return targets, nil
}

// isYAMLInventory reports whether the first line that is not blank or a
// comment is "hosts:".
func isYAMLInventory(b []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		return strings.HasPrefix(l, "hosts:")
	}
	return false
}

func parseInventoryLines(b []byte) ([]inventoryHost, error) {
	var hosts []inventoryHost
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		l, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want NAME ADDRESS [state=FILE] [ak=FILE]", n)
		}
		h := inventoryHost{Name: f[0], Address: f[1]}
		for _, kv := range f[2:] {
			k, v, ok := strings.Cut(kv, "=")
			switch {
			case ok && k == "state" && v != "":
				h.State = v
			case ok && k == "ak" && v != "":
				h.AK = v
			default:
				return nil, fmt.Errorf("line %d: unknown field %q, want state=FILE or ak=FILE", n, kv)
			}
		}
		hosts = append(hosts, h)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return hosts, nil
}

// ValidHostName reports whether name may name a host: letters, digits,
// '.', '_' and '-', starting with a letter or digit, at most 253 bytes (it
// names the host's state file).
func ValidHostName(name string) bool { return hostName.MatchString(name) }
