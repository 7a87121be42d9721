package main

import (
	"bytes"
	"context"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/qmorch/qmorch/tests/testcontroller"
)

// flFS is the host nodes' file systems of the fleet CLI tests: qmorch's transient units (the
// deliver, rm and cmp scripts) act on it, and the QM twins generate NAME.service from
// /etc/qm/containers/systemd/NAME.container on daemon-reload, as QM's Quadlet generator would.
type flFS struct {
	mu    sync.Mutex
	files map[string]map[string][]byte // host -> path -> content
}

const flQuadletDir = "/etc/qm/containers/systemd"

func (fs *flFS) put(host, p string, data []byte) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.files[host] == nil {
		fs.files[host] = map[string][]byte{}
	}
	fs.files[host][p] = bytes.Clone(data)
}

func (fs *flFS) get(host, p string) ([]byte, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, ok := fs.files[host][p]
	return d, ok
}

// flHost is an in-memory host node whose transient units run qmorch's file scripts on flFS.
type flHost struct {
	*testcontroller.MemoryNode
	fs   *flFS
	name string
}

func (n *flHost) Call(ctx context.Context, method string, args []any) ([]any, error) {
	if method != "StartTransientUnit" {
		return n.MemoryNode.Call(ctx, method, args)
	}
	var name, mode string
	var props []testcontroller.Property
	var aux []testcontroller.AuxUnit
	if err := dbus.Store(args, &name, &mode, &props, &aux); err != nil {
		return nil, err
	}
	var argv []string
	var payload []byte
	for _, p := range props {
		switch p.Name {
		case "ExecStart":
			for _, cmd := range p.Value.Value().([][]any) {
				argv = cmd[1].([]string)
			}
		case "SetCredential":
			for _, c := range p.Value.Value().([][]any) {
				payload = c[1].([]byte)
			}
		}
	}
	for i := range argv {
		argv[i] = strings.ReplaceAll(argv[i], "$$", "$")
	}
	status := n.script(argv, payload)
	out, err := n.MemoryNode.Call(ctx, method, args)
	if err != nil {
		return out, err
	}
	// The in-memory unit exits 0 unless told otherwise; ExecMainStatus carries the script's.
	_, err = n.MemoryNode.Call(ctx, "SetUnitProperties", []any{name, true,
		[]testcontroller.Property{{Name: "ExecMainStatus", Value: dbus.MakeVariant(status)}}})
	return out, err
}

// script does what qmorch's constant scripts do (argv: sh -c SCRIPT $0 ARGS...).
func (n *flHost) script(argv []string, payload []byte) int32 {
	if len(argv) < 4 {
		return 0
	}
	switch argv[3] {
	case "qmorch-deliver": // PAYLOAD TMP DEST DIR
		if old, ok := n.fs.get(n.name, argv[6]); ok && bytes.Equal(old, payload) {
			return 10
		}
		n.fs.put(n.name, argv[6], payload)
	case "qmorch-rm": // DEST
		n.fs.mu.Lock()
		defer n.fs.mu.Unlock()
		if _, ok := n.fs.files[n.name][argv[4]]; !ok {
			return 11
		}
		delete(n.fs.files[n.name], argv[4])
	case "qmorch-cmp": // PAYLOAD DEST
		old, ok := n.fs.get(n.name, argv[5])
		switch {
		case !ok:
			return 11
		case bytes.Equal(old, payload):
			return 10
		}
	}
	return 0
}

// flTwin is an in-memory QM twin whose daemon-reload runs "Quadlet" over its host's files.
type flTwin struct {
	*testcontroller.MemoryNode
	fs        *flFS
	host      string
	mu        sync.Mutex
	generated map[string]string // unit -> SourcePath
}

func (n *flTwin) Call(ctx context.Context, method string, args []any) ([]any, error) {
	out, err := n.MemoryNode.Call(ctx, method, args)
	if err != nil {
		return out, err
	}
	switch method {
	case "Reload":
		n.reload()
	case "GetUnitProperties":
		unit, _ := args[0].(string)
		iface, _ := args[1].(string)
		n.mu.Lock()
		src := n.generated[unit]
		n.mu.Unlock()
		if src != "" && iface == "org.freedesktop.systemd1.Unit" {
			out[0].(map[string]dbus.Variant)["SourcePath"] = dbus.MakeVariant(src)
		}
	}
	return out, nil
}

func (n *flTwin) reload() {
	n.fs.mu.Lock()
	present := map[string]string{}
	for p := range n.fs.files[n.host] {
		if path.Dir(p) == flQuadletDir && strings.HasSuffix(p, ".container") {
			present[strings.TrimSuffix(path.Base(p), ".container")+".service"] = "/etc/containers/systemd/" + path.Base(p)
		}
	}
	n.fs.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	for unit, src := range present {
		if active, _ := n.UnitState(unit); active == "" {
			n.AddUnit(testcontroller.UnitSpec{Name: unit, Description: unit})
		}
		n.generated[unit] = src
	}
	for unit := range n.generated {
		if _, ok := present[unit]; ok {
			continue
		}
		delete(n.generated, unit)
		if active, _ := n.UnitState(unit); active == "inactive" {
			n.RemoveUnit(unit)
		}
	}
}

// flFleet is the test double with node1, node2 and their QM twins backed by flFS, plus a
// state directory for qmorch's record.
type flFleet struct {
	h        *testcontroller.Harness
	fs       *flFS
	stateDir string
	nodes    map[string]*testcontroller.MemoryNode
}

func newFLFleet(t *testing.T) *flFleet {
	t.Helper()
	if !testcontroller.IsRoot() {
		t.Skip("the test controller's bus admits only root")
	}
	f := &flFleet{fs: &flFS{files: map[string]map[string][]byte{}}, stateDir: t.TempDir(),
		nodes: map[string]*testcontroller.MemoryNode{}}
	opts := []testcontroller.HarnessOption{testcontroller.WithMemoryNodes()}
	for _, host := range []string{"node1", "node2"} {
		hm, tm := testcontroller.NewMemoryNode(host), testcontroller.NewMemoryNode("qm."+host)
		f.nodes[host], f.nodes["qm."+host] = hm, tm
		opts = append(opts,
			testcontroller.WithBackend(host, &flHost{MemoryNode: hm, fs: f.fs, name: host}),
			testcontroller.WithBackend("qm."+host, &flTwin{MemoryNode: tm, fs: f.fs, host: host, generated: map[string]string{}}))
	}
	f.h = testcontroller.Start(t, opts...)
	return f
}

// run runs one qmorch command line in-process against the fleet.
func (f *flFleet) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := deps{streams: IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, connect: connectController}
	if !slices.Contains(args, "--bus-address") {
		args = append(args, "--bus-address", f.h.Address)
	}
	code = run(ctx, args, d)
	return out.String(), errOut.String(), code
}
