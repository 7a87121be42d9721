package deploy

import (
	"context"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/qmorch/qmorch/controller"
)

// fleetFake extends the deploy fake with what remove and list need, without touching it:
// the qmorch-rm and qmorch-cmp scripts on host nodes, ReloadUnit and ListUnits, SourcePath of
// Quadlet-generated units, and a Reload that unloads inactive units whose Quadlet file is gone.
type fleetFake struct {
	*fakeCtl
	sources map[string]map[string]string // twin -> unit -> SourcePath (as QM sees it)
	sticky  map[string]bool              // "twin/unit": provided by another unit file; Reload keeps it loaded
}

func newFleetFake(nodes ...string) *fleetFake {
	return &fleetFake{fakeCtl: newFake(nodes...), sources: map[string]map[string]string{}, sticky: map[string]bool{}}
}

func newFleetDeployer(f *fleetFake, opts ...Option) *Deployer {
	return New(f, append([]Option{WithSettle(50 * time.Millisecond), WithTimeout(5 * time.Second)}, opts...)...)
}

func (f *fleetFake) GetNode(ctx context.Context, name string) (Node, error) {
	n, err := f.fakeCtl.GetNode(ctx, name)
	if err != nil {
		return nil, err
	}
	return &fleetNode{fakeNode: n.(*fakeNode), ff: f}, nil
}

// putFile writes a file on a host node directly (a change made behind qmorch's back).
func (f *fleetFake) putFile(node, p, content string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[node][p] = fakeFile{data: []byte(content), mode: 0o644}
}

func (f *fleetFake) deleteFile(node, p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.files[node], p)
}

type fleetNode struct {
	*fakeNode
	ff *fleetFake
}

func (n *fleetNode) StartTransientUnit(ctx context.Context, name string, mode controller.JobMode,
	props []controller.Property, aux []controller.AuxUnit) (dbus.ObjectPath, error) {
	var argv []string
	var payload []byte
	for _, p := range props {
		switch p.Name {
		case "ExecStart":
			argv = p.Value.Value().([]ExecCommand)[0].Argv
		case "SetCredential":
			payload = p.Value.Value().([]Credential)[0].Data
		}
	}
	if len(argv) < 5 || (argv[3] != "qmorch-rm" && argv[3] != "qmorch-cmp") {
		return n.fakeNode.StartTransientUnit(ctx, name, mode, props, aux)
	}
	f := n.f
	f.record("%s StartTransientUnit %s %s", n.name, name, argv[3])
	if err := n.checkOnline(); err != nil {
		return "", err
	}
	f.mu.Lock()
	f.units[n.name][name] = &fakeUnit{load: "loaded", active: "activating", sub: "start"}
	f.mu.Unlock()
	go func() {
		f.mu.Lock()
		var status int32
		switch argv[3] {
		case "qmorch-rm":
			p := unescapeSystemd(argv[4])
			if _, ok := f.files[n.name][p]; ok {
				delete(f.files[n.name], p)
			} else {
				status = exitMissing
			}
		case "qmorch-cmp":
			ff, ok := f.files[n.name][unescapeSystemd(argv[5])]
			switch {
			case !ok:
				status = exitMissing
			case string(ff.data) == string(payload):
				status = exitSame
			}
		}
		u := f.units[n.name][name]
		if u != nil {
			u.status, u.result = status, "success"
		}
		f.mu.Unlock()
		if u != nil {
			f.setUnit(n.name, name, "active", "exited")
		}
	}()
	return "/org/freedesktop/systemd1/job/2", nil
}

func (n *fleetNode) Reload(ctx context.Context) error {
	if err := n.fakeNode.Reload(ctx); err != nil {
		return err
	}
	f := n.f
	host, ok := strings.CutPrefix(n.name, f.twinPrefix)
	if !ok {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	dir := quadletDir(f.rwetcfs)
	srcs := n.ff.sources[n.name]
	if srcs == nil {
		srcs = map[string]string{}
		n.ff.sources[n.name] = srcs
	}
	present := map[string]bool{}
	for p := range f.files[host] {
		if path.Dir(p) == dir && strings.HasSuffix(p, ".container") {
			unit := strings.TrimSuffix(path.Base(p), ".container") + ".service"
			present[unit] = true
			srcs[unit] = quadletSourceDir + path.Base(p)
		}
	}
	for unit := range srcs {
		if present[unit] {
			continue
		}
		delete(srcs, unit)
		if u := f.units[n.name][unit]; u != nil && u.active == "inactive" {
			delete(f.units[n.name], unit)
		}
	}
	for key := range n.ff.sticky {
		if twin, unit, _ := strings.Cut(key, "/"); twin == n.name && f.units[n.name][unit] == nil {
			f.units[n.name][unit] = &fakeUnit{load: "loaded", active: "inactive", sub: "dead"}
		}
	}
	return nil
}

func (n *fleetNode) GetUnitProperties(ctx context.Context, unit, iface string) (map[string]dbus.Variant, error) {
	props, err := n.fakeNode.GetUnitProperties(ctx, unit, iface)
	if err != nil || iface != unitIface {
		return props, err
	}
	n.f.mu.Lock()
	defer n.f.mu.Unlock()
	if src := n.ff.sources[n.name][unit]; src != "" {
		props["SourcePath"] = dbus.MakeVariant(src)
	}
	return props, nil
}

func (n *fleetNode) ReloadUnit(ctx context.Context, unit string, _ controller.JobMode) (Job, error) {
	return n.job(ctx, "ReloadUnit", unit)
}

func (n *fleetNode) ListUnits(context.Context) ([]controller.UnitInfo, error) {
	n.f.record("%s ListUnits", n.name)
	if err := n.checkOnline(); err != nil {
		return nil, err
	}
	n.f.mu.Lock()
	defer n.f.mu.Unlock()
	var out []controller.UnitInfo
	for name, u := range n.f.units[n.name] {
		out = append(out, controller.UnitInfo{Name: name, LoadState: u.load, ActiveState: u.active, SubState: u.sub})
	}
	slices.SortFunc(out, func(a, b controller.UnitInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
