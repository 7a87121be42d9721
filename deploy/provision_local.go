package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing/fstest"

	"github.com/qmorch/qmorch/agent"
	"github.com/qmorch/qmorch/qmconf"
)

// FileAction is what provisioning did (or, with DryRun, would do) to one file.
type FileAction string

const (
	FileChanged     FileAction = "changed"      // written: new or different content
	FileUnchanged   FileAction = "unchanged"    // same bytes already there: not touched (mtime kept)
	FileWouldChange FileAction = "would-change" // DryRun: content differs or the file is missing
)

// ProvisionFile is one file provisioning manages.
type ProvisionFile struct {
	Path      string // path in the target system, e.g. /etc/qm/bluechi/agent.conf.d/99-qmorch.conf
	LocalPath string // the same file on this machine (under Root)
	Action    FileAction
	Content   []byte
	Diff      string // DryRun only: unified diff from the current file ("" when unchanged)
}

// QMAgentLocalRequest provisions QM's bluechi-agent from the host configuration of a local
// tree (the node itself with Root "/", or an image).
type QMAgentLocalRequest struct {
	Root     string // "" or "/" for this system
	Hostname string // "" = this host's (Root "/") or the tree's /etc/hostname
	Prefix   string // QM twin prefix; "" = "qm."
	Mode     qmconf.Reachability
	TCPHost  string // tcp mode: controller address as seen from QM
	DryRun   bool
}

// QMAgentProvision is the outcome of a local QM agent provisioning.
type QMAgentProvision struct {
	Root           string
	Hostname       string
	HostnameSource string // "--hostname", "this host", "/etc/hostname" or ""
	HostNodeName   string
	NodeName       string
	Mode           qmconf.Reachability
	RWETCFS        string
	DryRun         bool
	Files          []ProvisionFile
	Notes          []string // choices worth showing (fallbacks, what to do next)
	Warnings       []string // problems found in the configuration that did not stop provisioning
}

// Changed reports whether a file was written (with DryRun: would be).
func (p *QMAgentProvision) Changed() bool { return anyChanged(p.Files) }

func anyChanged(files []ProvisionFile) bool {
	for _, f := range files {
		if f.Action != FileUnchanged {
			return true
		}
	}
	return false
}

// ValidateTwinPrefix checks a QM twin prefix: non-empty, letters, digits and "._-" only (it
// becomes part of node names and of the command line of remote provisioning).
func ValidateTwinPrefix(p string) error {
	if p == "" {
		return fmt.Errorf("empty QM prefix")
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("QM prefix %q: only letters, digits and \"._-\" are allowed", p)
		}
	}
	return nil
}

// ValidateTCPHost checks a controller host given for tcp mode: a host name or IP address
// (brackets allowed around IPv6), nothing that systemd, a shell or a D-Bus address would read.
func ValidateTCPHost(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("controller host %q: want a host name or IP address", h)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
			return fmt.Errorf("controller host %q: character %q is not allowed", h, c)
		}
	}
	if h[0] == '-' {
		return fmt.Errorf("controller host %q must not start with '-'", h)
	}
	return nil
}

func validateMode(m qmconf.Reachability) error {
	switch m {
	case qmconf.ReachAuto, qmconf.ReachSocket, qmconf.ReachTCP:
		return nil
	}
	return fmt.Errorf("mode %q: want auto, socket or tcp", m)
}

// ProvisionQMAgentLocal derives the QM agent drop-in from the effective host agent
// configuration under req.Root and writes ${RWETCFS}/bluechi/agent.conf.d/99-qmorch.conf (and,
// in socket mode, the qm.container drop-in mounting the controller socket): each atomically
// (temp file in the same directory, fsync, rename, mode 0644) and only when its bytes differ.
// RWETCFS comes from the effective qm.container under Root (default /etc/qm).
//
// Errors wrapping ErrInvalid mean bad options or a host configuration BlueChi would refuse
// (nothing was written).
func ProvisionQMAgentLocal(req QMAgentLocalRequest) (*QMAgentProvision, error) {
	if req.Prefix == "" {
		req.Prefix = qmconf.DefaultTwinPrefix
	}
	if err := ValidateTwinPrefix(req.Prefix); err != nil {
		return nil, withClass(ErrInvalid, err)
	}
	if err := validateMode(req.Mode); err != nil {
		return nil, withClass(ErrInvalid, err)
	}
	if req.TCPHost != "" {
		if err := ValidateTCPHost(req.TCPHost); err != nil {
			return nil, withClass(ErrInvalid, err)
		}
	}
	rfs, err := OpenRootFS(req.Root)
	if err != nil {
		return nil, withClass(ErrInvalid, fmt.Errorf("root: %w", err))
	}
	defer rfs.Close()
	p := &QMAgentProvision{Root: rfs.Dir(), DryRun: req.DryRun, Hostname: req.Hostname, HostnameSource: "--hostname"}
	if p.Hostname == "" {
		p.Hostname, p.HostnameSource = RootHostname(rfs)
	}

	lay, lw, err := qmconf.LoadLayout(rfs.Dir())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		lay = qmconf.DefaultLayout()
		p.Notes = append(p.Notes, "no qm.container found under the root: using RWETCFS "+lay.RWETCFS)
	case err != nil:
		return nil, withClass(ErrInvalid, fmt.Errorf("QM layout: %w", err))
	}
	for _, w := range lw {
		p.Warnings = append(p.Warnings, w.String())
	}
	p.RWETCFS = lay.RWETCFS

	d, err := qmconf.DeriveQMAgentFromFS(rfs, qmconf.DeriveOptions{
		Hostname: p.Hostname, Prefix: req.Prefix, Mode: req.Mode, TCPHost: req.TCPHost,
	})
	if err != nil {
		return nil, withClass(ErrInvalid, describeRootErr(err))
	}
	p.HostNodeName, p.NodeName, p.Mode = d.HostNodeName, d.NodeName, d.Mode
	for _, w := range d.HostWarnings {
		p.Warnings = append(p.Warnings, "host agent: "+w.String())
	}
	p.Notes = append(p.Notes, d.Notes...)

	dropIn := path.Join(lay.RWETCFS, "bluechi", "agent.conf.d", d.DropInName)
	qmWarnings, err := checkQMAgentWins(rfs, lay, dropIn, d)
	if err != nil {
		return nil, withClass(ErrInvalid, err)
	}
	p.Warnings = append(p.Warnings, qmWarnings...)
	files := []qmconf.HostFile{{Path: dropIn, Content: d.DropIn}}
	if d.ContainerDropIn != nil {
		files = append(files, *d.ContainerDropIn)
	} else {
		stale := path.Join(qmconf.QMContainerDropInDir, qmconf.DefaultSocketDropIn)
		if _, err := rfs.Stat(stale); err == nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s (socket mode) is still there although mode is %s: remove it, then daemon-reload and restart qm", stale, d.Mode))
		}
	}
	for _, f := range files {
		pf, err := applyFile(rfs, f, req.DryRun)
		if err != nil {
			return p, err
		}
		p.Files = append(p.Files, pf)
		if d.ContainerDropIn != nil && f.Path == d.ContainerDropIn.Path && pf.Action != FileUnchanged {
			p.Notes = append(p.Notes, "the qm.container drop-in takes effect after `systemctl daemon-reload && systemctl restart qm` on the host, which restarts every nested unit")
		}
	}
	return p, nil
}

// applyFile compares f with what the tree holds and, unless dryRun, writes it atomically
// when it differs. The directory is resolved inside the root first, so symlinked directories
// (absolute ones included) are followed the way the target system would.
func applyFile(rfs *RootFS, f qmconf.HostFile, dryRun bool) (ProvisionFile, error) {
	pf := ProvisionFile{Path: f.Path, Content: f.Content}
	dir, err := rfs.Resolve(path.Dir(f.Path))
	if err != nil {
		return pf, fmt.Errorf("%s: %w", f.Path, describeRootErr(err))
	}
	name := path.Base(f.Path)
	pf.LocalPath = path.Join(rfs.Dir(), dir, name)
	if dryRun {
		cur, err := rfs.ReadFile(path.Join(dir, name))
		oldName := f.Path
		if errors.Is(err, fs.ErrNotExist) {
			cur, oldName = nil, "/dev/null"
		} else if err != nil {
			return pf, fmt.Errorf("read %s: %w", f.Path, describeRootErr(err))
		}
		pf.Action = FileUnchanged
		if !bytes.Equal(cur, f.Content) {
			pf.Action = FileWouldChange
			pf.Diff = qmconf.UnifiedDiff(oldName, f.Path, cur, f.Content)
		}
		return pf, nil
	}
	changed, err := writeLocal(rfs.Dir(), dir, name, f.Content)
	if err != nil {
		return pf, fmt.Errorf("write %s: %w", pf.LocalPath, err)
	}
	pf.Action = FileUnchanged
	if changed {
		pf.Action = FileChanged
	}
	return pf, nil
}

// ControllerLocalRequest provisions the controller's allow-list in a local tree.
type ControllerLocalRequest struct {
	Root       string
	Nodes      []string // host node names; each is allowed together with its QM twin
	Prefix     string   // "" = "qm."
	DropInName string   // "" = qmconf.DefaultControllerDropIn
	DryRun     bool
}

// ControllerProvision is the outcome of a local controller provisioning.
type ControllerProvision struct {
	Root     string
	DryRun   bool
	Names    []string // AllowedNodeNames as the controller will read them
	Files    []ProvisionFile
	Notes    []string
	Warnings []string
}

// Changed reports whether the drop-in was written (with DryRun: would be).
func (p *ControllerProvision) Changed() bool { return anyChanged(p.Files) }

// ProvisionControllerLocal writes controller.conf.d/NN-qmorch.conf whose AllowedNodeNames
// holds the names other files allow plus every requested node and its QM twin, wrapped with
// continuation lines (every line < 500 bytes). It is computed from the controller
// configuration without qmorch's own drop-in (so a second run with the same nodes gives the
// same bytes), written only on change, and re-read through the whole controller merge after
// the write: if a later file overrides the list, that is an error.
func ProvisionControllerLocal(req ControllerLocalRequest) (*ControllerProvision, error) {
	if req.Prefix == "" {
		req.Prefix = qmconf.DefaultTwinPrefix
	}
	if err := ValidateTwinPrefix(req.Prefix); err != nil {
		return nil, withClass(ErrInvalid, err)
	}
	if len(req.Nodes) == 0 {
		return nil, invalidf("no nodes given")
	}
	name := req.DropInName
	if name == "" {
		name = qmconf.DefaultControllerDropIn
	}
	rfs, err := OpenRootFS(req.Root)
	if err != nil {
		return nil, withClass(ErrInvalid, fmt.Errorf("root: %w", err))
	}
	defer rfs.Close()
	p := &ControllerProvision{Root: rfs.Dir(), DryRun: req.DryRun}

	snap, err := controllerSnapshot(rfs, name)
	if err != nil {
		return nil, withClass(ErrInvalid, describeRootErr(err))
	}
	paths := agent.PathsFor(agent.ProgramController)
	if _, ok := snap[fsName(paths.Default)]; !ok {
		// bluechi-controller refuses to start without it (conformance case
		// controller/35-missing-default-file): so does qmorch, rather than guess.
		return nil, invalidf("%s is missing under %s: bluechi-controller would not start (is it installed in this tree?)", paths.Default, rfs.Dir())
	}
	current, err := agent.LoadController(agent.LoadOptions{FS: snap, Paths: paths})
	if err != nil {
		return nil, withClass(ErrInvalid, fmt.Errorf("current controller configuration: %w", err))
	}
	al, err := qmconf.RenderAllowList(current, req.Nodes, qmconf.AllowListOptions{Prefix: req.Prefix, DropInName: name})
	if err != nil {
		return nil, withClass(ErrInvalid, err)
	}
	p.Names = al.Names
	if err := checkAllowListWins(snap, paths, al); err != nil {
		return nil, withClass(ErrInvalid, err)
	}
	cfg, _ := agent.LoadController(agent.LoadOptions{FS: withFile(snap, al.Path, al.Content), Paths: paths})
	if cfg != nil {
		for _, w := range cfg.Warnings {
			p.Warnings = append(p.Warnings, w.String())
		}
	}

	pf, err := applyFile(rfs, qmconf.HostFile{Path: al.Path, Content: al.Content}, req.DryRun)
	if err != nil {
		return p, err
	}
	p.Files = append(p.Files, pf)
	if req.DryRun {
		return p, nil
	}
	// Read back what is on disk now, through the whole merge.
	after, err := controllerSnapshot(rfs, "")
	if err != nil {
		return p, fmt.Errorf("re-read after write: %w", err)
	}
	if got := after[fsName(al.Path)]; got == nil || !bytes.Equal(got.Data, al.Content) {
		return p, fmt.Errorf("re-read %s after write: content differs from what was written", al.Path)
	}
	if err := checkLines(al.Path, al.Content); err != nil {
		return p, err
	}
	if err := checkAllowListWins(after, paths, al); err != nil {
		return p, err
	}
	if pf.Action == FileChanged {
		p.Notes = append(p.Notes, "restart bluechi-controller to apply: systemctl restart bluechi-controller")
	}
	return p, nil
}

// maxWrittenLine: qmorch's files keep every line under 500 bytes (BlueChi reads 519-byte chunks).
const maxWrittenLine = 499

func checkLines(name string, content []byte) error {
	for i, l := range bytes.Split(content, []byte("\n")) {
		if len(l) > maxWrittenLine {
			return fmt.Errorf("%s:%d: line of %d bytes (limit %d)", name, i+1, len(l), maxWrittenLine)
		}
	}
	return nil
}

// checkAllowListWins merges snap with al in place and checks that the controller then allows
// every name of al.
func checkAllowListWins(snap fstest.MapFS, paths agent.Paths, al *qmconf.AllowList) error {
	cfg, err := agent.LoadController(agent.LoadOptions{FS: withFile(snap, al.Path, al.Content), Paths: paths})
	if err != nil {
		return fmt.Errorf("controller configuration with %s: %w", al.Path, err)
	}
	cc, err := cfg.Controller(agent.ControllerFlags{})
	if err != nil {
		return fmt.Errorf("controller configuration with %s: %w", al.Path, err)
	}
	var missing []string
	for _, n := range al.Names {
		if !slices.Contains(cc.Nodes, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	where := "a later file"
	if e := cfg.Lookup(agent.SectionController, "AllowedNodeNames"); e != nil {
		where = e.Origin.String()
	}
	return fmt.Errorf("%s does not take effect: AllowedNodeNames is set again at %s, so the controller would not allow %s",
		al.Path, where, strings.Join(missing, ", "))
}

// controllerSnapshot copies the controller's configuration files from the tree into memory
// (symlinks resolved inside the root), leaving out the drop-in named skip.
func controllerSnapshot(rfs *RootFS, skip string) (fstest.MapFS, error) {
	paths := agent.PathsFor(agent.ProgramController)
	m := fstest.MapFS{}
	for _, p := range []string{paths.Default, paths.Main} {
		b, err := rfs.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", p, err)
		default:
			m[fsName(p)] = &fstest.MapFile{Data: b, Mode: 0o644}
		}
	}
	list, err := rfs.ReadDir(paths.DropIn)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", paths.DropIn, err)
	}
	for _, e := range list {
		if e.Name() == skip || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		p := paths.DropIn + "/" + e.Name()
		b, err := rfs.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w (bluechi-controller would refuse to start)", p, err)
		}
		m[fsName(p)] = &fstest.MapFile{Data: b, Mode: 0o644}
	}
	return m, nil
}

func withFile(m fstest.MapFS, p string, data []byte) fstest.MapFS {
	out := make(fstest.MapFS, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[fsName(p)] = &fstest.MapFile{Data: data, Mode: 0o644}
	return out
}

func fsName(p string) string { return strings.TrimPrefix(path.Clean(p), "/") }

// checkQMAgentWins reads QM's agent configuration the way QM's bluechi-agent will (its default
// file from ROOTFS, its /etc from RWETCFS) with the new drop-in in place, and checks that every
// key of the drop-in comes out as written. "99-qmorch.conf" sorts before names that start with
// a letter (QM's own setup writes agent.conf.d/agent.conf), so a later file can override it, and a
// broken file sorting after it makes the QM agent exit. Both are errors: provisioning would
// not do what it says. Files qmorch cannot read are reported as warnings (not checked).
func checkQMAgentWins(rfs *RootFS, lay qmconf.Layout, dropIn string, d *qmconf.QMAgentConfig) ([]string, error) {
	def := agent.PathsFor(agent.ProgramAgent).Default
	paths := agent.Paths{
		Default: path.Join(lay.ROOTFS, def),
		Main:    path.Join(lay.RWETCFS, "bluechi", "agent.conf"),
		DropIn:  path.Dir(dropIn),
	}
	snap := fstest.MapFS{}
	var warnings []string
	read := func(p string) {
		b, err := rfs.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			warnings = append(warnings, fmt.Sprintf("QM agent: cannot read %s to check it: %v", p, describeRootErr(err)))
		default:
			snap[fsName(p)] = &fstest.MapFile{Data: b, Mode: 0o644}
		}
	}
	read(paths.Default)
	read(paths.Main)
	if list, err := rfs.ReadDir(paths.DropIn); err == nil {
		for _, e := range list {
			if e.Name() != path.Base(dropIn) && strings.HasSuffix(e.Name(), ".conf") {
				read(path.Join(paths.DropIn, e.Name()))
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		warnings = append(warnings, fmt.Sprintf("QM agent: cannot list %s to check it: %v", paths.DropIn, describeRootErr(err)))
	}
	if _, ok := snap[fsName(paths.Default)]; !ok {
		paths.Default = "" // bluechi-agent not (yet) in QM's rootfs: check the rest
	}
	snap[fsName(dropIn)] = &fstest.MapFile{Data: d.DropIn, Mode: 0o644}
	cfg, err := agent.LoadAgent(agent.LoadOptions{FS: snap, Paths: paths, Hostname: "qm-container-id"})
	if err != nil {
		return warnings, fmt.Errorf("QM's bluechi-agent would not start with %s in place: %w", dropIn, err)
	}
	for _, w := range cfg.Warnings {
		warnings = append(warnings, "QM agent: "+w.String())
	}
	for _, k := range d.Doc.Sections[0].Keys {
		e := cfg.Lookup(agent.SectionAgent, k.Key)
		if e != nil && e.Value == k.Text() {
			continue
		}
		got, where := "", "nowhere"
		if e != nil {
			got, where = e.Value, e.Origin.String()
		}
		return warnings, fmt.Errorf("%s does not take effect: QM's bluechi-agent would use %s=%s from %s (a file that sorts after %s); remove or rename that file",
			dropIn, k.Key, got, where, path.Base(dropIn))
	}
	return warnings, nil
}
