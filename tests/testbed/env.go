// Package testbed reads the summary that tests/testbed/testbed.sh writes for e2e tests
// ($TB/testbed.env, TB default /var/tmp/qmorch-testbed). The file is KEY=VALUE lines (shell
// syntax, values optionally double-quoted); per node: NODE_<name>_BUS, _PID, _NSPAWN_PID, _NETNS,
// _ADDR, _ROOT, and for nodes with a QM partition QM_<name>_BUS, _PID, _ETC.
// Node PIDs change when a node is stopped and started again: Load the file again after that.
package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultDir is the state directory when $TB is unset.
const DefaultDir = "/var/tmp/qmorch-testbed"

// ErrNotUp is returned by Load when no testbed.env exists (the testbed is not up).
var ErrNotUp = errors.New("testbed: not up (no testbed.env)")

// Node is one systemd-nspawn machine of the testbed.
type Node struct {
	Name      string
	Bus       string // D-Bus address of the node's system bus (unix:path=...)
	PID       int    // host PID of the node's systemd (0 if not running)
	NspawnPID int
	Netns     string // network namespace (ip netns exec / nsenter)
	Addr      string // address inside the testbed network (never reachable from the host netns)
	Root      string // host path of the node's merged root (overlay)
	QMBus     string // D-Bus address of QM's system bus; "" if the node has no QM
	QMPID     int    // host PID of QM's init
	QMEtc     string // host path of the node's /etc/qm
}

// Env is the parsed testbed.env.
type Env struct {
	Dir     string
	Nodes   map[string]*Node
	Order   []string // node names, in order
	QMNodes []string
	Raw     map[string]string
}

// Dir returns $TB or DefaultDir.
func Dir() string {
	if d := os.Getenv("TB"); d != "" {
		return d
	}
	return DefaultDir
}

// Load reads dir/testbed.env (dir "" = Dir()).
func Load(dir string) (*Env, error) {
	if dir == "" {
		dir = Dir()
	}
	f, err := os.Open(filepath.Join(dir, "testbed.env"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotUp
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	raw := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("testbed.env: bad line %q", line)
		}
		raw[k] = strings.Trim(v, `"`)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return parse(dir, raw)
}

func parse(dir string, raw map[string]string) (*Env, error) {
	e := &Env{Dir: dir, Nodes: map[string]*Node{}, Raw: raw,
		Order: strings.Fields(raw["TB_NODES"]), QMNodes: strings.Fields(raw["TB_QM_NODES"])}
	if len(e.Order) == 0 {
		return nil, errors.New("testbed.env: no TB_NODES")
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	for _, n := range e.Order {
		g := func(p, k string) string { return raw[p+"_"+n+"_"+k] }
		e.Nodes[n] = &Node{Name: n, Bus: g("NODE", "BUS"), PID: atoi(g("NODE", "PID")),
			NspawnPID: atoi(g("NODE", "NSPAWN_PID")), Netns: g("NODE", "NETNS"), Addr: g("NODE", "ADDR"),
			Root: g("NODE", "ROOT"), QMBus: g("QM", "BUS"), QMPID: atoi(g("QM", "PID")), QMEtc: g("QM", "ETC")}
	}
	return e, nil
}

// Node returns the named node or an error naming the known ones.
func (e *Env) Node(name string) (*Node, error) {
	if n, ok := e.Nodes[name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("testbed: no node %q (have %v)", name, e.Order)
}
