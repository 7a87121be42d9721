package qmconf

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"strings"
	"testing/fstest"

	"github.com/qmorch/qmorch/agent"
)

// Reachability says how the QM agent reaches the controller.
type Reachability string

const (
	// ReachAuto picks socket when the host agent talks to a controller on
	// this host (loopback or unix socket), tcp otherwise.
	ReachAuto Reachability = ""
	// ReachSocket bind-mounts the host controller socket into QM.
	ReachSocket Reachability = "socket"
	// ReachTCP uses a TCP address reachable from QM's private network.
	ReachTCP Reachability = "tcp"
)

// Defaults of the derivation.
const (
	DefaultQMDropIn          = "99-qmorch.conf" // sorts last in QM's agent.conf.d
	DefaultHostSocket        = "/run/bluechi/bluechi.sock"
	DefaultQMSocket          = "/run/bluechi.sock"
	DefaultSocketDropIn      = "90-qmorch-bluechi-socket.conf"
	QMContainerDropInDir     = "/etc/containers/systemd/qm.container.d"
	qmAgentDropInDirInsideQM = "/etc/bluechi/agent.conf.d"
)

// DeriveOptions tune the QM agent derivation.
type DeriveOptions struct {
	// Hostname is the host's hostname, used when the effective host NodeName
	// is unset or empty.
	Hostname string
	// Prefix goes before the host node name; "" means DefaultTwinPrefix ("qm.").
	Prefix string
	// UsesProxies refuses '_' in the QM node name (proxy instances split at '_').
	UsesProxies bool
	Mode        Reachability
	// TCPHost is the controller host as seen from inside QM (tcp mode). When
	// empty, the host agent's ControllerHost/ControllerAddress is used if it
	// is not loopback and not a unix socket.
	TCPHost string
	// DropInName is the QM agent drop-in file name; "" means DefaultQMDropIn.
	DropInName string
	// SocketDropInName is the qm.container drop-in file name (socket mode);
	// "" means DefaultSocketDropIn.
	SocketDropInName string
}

// HostFile is a file qmorch writes on the host.
type HostFile struct {
	Path    string
	Content []byte
}

// QMAgentConfig is the derived QM agent configuration.
type QMAgentConfig struct {
	HostNodeName string
	NodeName     string
	Mode         Reachability
	// DropInName is the file name in QM's /etc/bluechi/agent.conf.d
	// (${RWETCFS}/bluechi/agent.conf.d on the host).
	DropInName string
	DropIn     []byte
	Doc        agent.Document
	// ContainerDropIn is the qm.container drop-in that mounts the controller
	// socket (socket mode only).
	ContainerDropIn *HostFile
	// Notes explain choices worth showing to the user (fallbacks, dropped values).
	Notes []string
	// HostWarnings are what the host agent configuration holds that BlueChi accepts silently
	// (duplicate keys, unknown keys, skipped drop-ins, ...).
	HostWarnings []agent.Warning
}

// carriedKeys are host settings copied into QM when a host file sets them.
// Env values are not copied: they belong to the host agent's service.
var carriedKeys = []string{
	"HeartbeatInterval", "ControllerHeartbeatThreshold", "ConnectionRetryCountUntilQuiet",
	"LogLevel", "LogTarget", "LogIsQuiet",
	"TCPKeepAliveTime", "TCPKeepAliveInterval", "TCPKeepAliveCount", "IPReceiveErrors",
}

// DeriveQMAgentFromFS loads the host agent configuration from fsys (the
// host's "/") like bluechi-agent and derives the QM agent configuration. A
// missing default file (bluechi-agent not installed) is read as empty.
func DeriveQMAgentFromFS(fsys fs.FS, opts DeriveOptions) (*QMAgentConfig, error) {
	lo := agent.LoadOptions{FS: fsys, Hostname: opts.Hostname}
	host, err := agent.LoadAgent(lo)
	var pe *agent.ParseError
	var note string
	if errors.As(err, &pe) && pe.Path == agent.PathsFor(agent.ProgramAgent).Default && errors.Is(pe.Err, fs.ErrNotExist) {
		lo.Paths = agent.PathsFor(agent.ProgramAgent)
		lo.Paths.Default = ""
		host, err = agent.LoadAgent(lo)
		note = "no " + pe.Path + " on the host (bluechi-agent not installed?): read as empty"
	}
	if err != nil {
		return nil, fmt.Errorf("host agent configuration: %w", err)
	}
	d, err := DeriveQMAgent(host, opts)
	if err != nil {
		return nil, err
	}
	if note != "" {
		d.Notes = append([]string{note}, d.Notes...)
	}
	return d, nil
}

// DeriveQMAgent computes the QM agent drop-in from the effective host agent
// configuration (qm.md, "What correct provisioning means").
func DeriveQMAgent(host *agent.Config, opts DeriveOptions) (*QMAgentConfig, error) {
	if host.Program != agent.ProgramAgent {
		return nil, fmt.Errorf("derive QM agent: need an agent configuration, got %s", host.Program)
	}
	d := &QMAgentConfig{DropInName: opts.DropInName, HostWarnings: host.Warnings}
	if d.DropInName == "" {
		d.DropInName = DefaultQMDropIn
	}
	if err := checkDropInName(d.DropInName); err != nil {
		return nil, err
	}

	// NodeName: the effective host name, else the hostname (the QM setup
	// script's bug was to produce no name at all here).
	name, ok := host.Get("NodeName")
	if !ok {
		if opts.Hostname == "" {
			return nil, fmt.Errorf("derive QM agent: host NodeName is unset and no hostname was given")
		}
		name = opts.Hostname
		if e := host.Lookup(agent.SectionAgent, "NodeName"); e != nil && e.Origin.Kind == agent.OriginFile {
			d.Notes = append(d.Notes, fmt.Sprintf("host NodeName is emptied at %s (the host agent would refuse to start): using hostname %q", e.Origin, name))
		}
	}
	d.HostNodeName = name
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultTwinPrefix
	}
	d.NodeName = TwinName(prefix, name)
	check := ValidateNodeName
	if opts.UsesProxies {
		check = ValidateProxyNodeName
	}
	if err := check(d.NodeName); err != nil {
		return nil, fmt.Errorf("derive QM agent: QM node name: %w", err)
	}

	keys := []agent.DocKey{{Key: "NodeName", Value: d.NodeName}}
	reach, err := deriveReach(host, opts, d)
	if err != nil {
		return nil, fmt.Errorf("derive QM agent %s: %w", d.NodeName, err)
	}
	keys = append(keys, reach...)
	for _, k := range carriedKeys {
		e := host.Lookup(agent.SectionAgent, k)
		if e == nil || e.Value == "" || e.Origin.Kind != agent.OriginFile {
			continue
		}
		keys = append(keys, agent.DocKey{Key: k, Value: e.Value})
	}

	d.Doc = agent.Document{
		Header: []string{
			"Written by qmorch: the QM twin of host node " + d.HostNodeName + ".",
			"Derived from the host's effective bluechi-agent configuration; edits are overwritten.",
		},
		Sections: []agent.DocSection{{Name: agent.SectionAgent, Keys: keys}},
	}
	d.DropIn, err = agent.Render(d.Doc)
	if err != nil {
		return nil, fmt.Errorf("derive QM agent %s: render: %w", d.NodeName, err)
	}
	if err := verifyDropIn(d); err != nil {
		return nil, err
	}
	return d, nil
}

// deriveReach returns the controller keys for the QM drop-in and fills
// d.Mode and d.ContainerDropIn.
func deriveReach(host *agent.Config, opts DeriveOptions, d *QMAgentConfig) ([]agent.DocKey, error) {
	hostAddr, _ := host.Get("ControllerAddress")
	hostHost, _ := host.Get("ControllerHost")
	hostPort, hasPort := host.Get("ControllerPort")
	if !hasPort {
		hostPort = "842"
	}

	// Where does the host agent go? A unix address or a loopback host means
	// the controller runs on this host and is unreachable from QM as such.
	var sockPath string
	local := false
	tcpHost, tcpPort := hostHost, hostPort
	switch {
	case hostAddr != "":
		tr, p, err := parseBusAddress(hostAddr)
		if err != nil {
			return nil, fmt.Errorf("host ControllerAddress %q: %w", hostAddr, err)
		}
		switch tr {
		case "unix":
			sockPath, local = p["path"], true
			if sockPath == "" {
				return nil, fmt.Errorf("host ControllerAddress %q: only unix:path= is supported", hostAddr)
			}
		case "tcp":
			tcpHost, tcpPort = p["host"], p["port"]
			if tcpPort == "" {
				tcpPort = hostPort
			}
			local = isLoopback(tcpHost)
		default:
			return nil, fmt.Errorf("host ControllerAddress %q: transport %q is not supported", hostAddr, tr)
		}
	case hostHost == "":
		return nil, fmt.Errorf("host agent has neither ControllerHost nor ControllerAddress")
	default:
		local = isLoopback(hostHost)
	}

	mode := opts.Mode
	if mode == ReachAuto {
		mode = ReachTCP
		if local && opts.TCPHost == "" {
			mode = ReachSocket
		}
	}
	d.Mode = mode

	switch mode {
	case ReachSocket:
		if !local {
			return nil, fmt.Errorf("socket mode needs the controller on this host, but the host agent connects to %s", firstNonEmpty(hostAddr, hostHost))
		}
		if sockPath == "" {
			sockPath = DefaultHostSocket
		}
		if err := checkVolumePath(sockPath); err != nil {
			return nil, fmt.Errorf("controller socket: %w", err)
		}
		name := opts.SocketDropInName
		if name == "" {
			name = DefaultSocketDropIn
		}
		if err := checkDropInName(name); err != nil {
			return nil, err
		}
		d.ContainerDropIn = &HostFile{
			Path: path.Join(QMContainerDropInDir, name),
			Content: []byte("# Written by qmorch: lets the QM bluechi-agent reach the host controller.\n" +
				"[Container]\nVolume=" + sockPath + ":" + DefaultQMSocket + "\n"),
		}
		return []agent.DocKey{{Key: "ControllerAddress", Value: "unix:path=" + DefaultQMSocket}}, nil
	case ReachTCP:
		if opts.TCPHost != "" {
			if isLoopback(opts.TCPHost) {
				return nil, fmt.Errorf("tcp mode: %q is loopback, which inside QM is QM itself", opts.TCPHost)
			}
			tcpHost = opts.TCPHost
			if sockPath != "" {
				tcpPort = hostPort
			}
		} else if sockPath != "" {
			return nil, fmt.Errorf("tcp mode: the host agent uses the unix socket %s, which QM cannot reach; give the controller's address as seen from QM", sockPath)
		} else if local {
			return nil, fmt.Errorf("tcp mode: host ControllerHost %s is loopback, which inside QM is QM itself; use socket mode or give the controller's address as seen from QM", tcpHost)
		}
		if strings.ContainsAny(tcpHost, ",; \t") || tcpHost == "" {
			return nil, fmt.Errorf("tcp mode: bad controller host %q", tcpHost)
		}
		if _, err := parsePortString(tcpPort); err != nil {
			return nil, fmt.Errorf("tcp mode: %w", err)
		}
		// Unset ControllerAddress so that a stale address in an earlier QM
		// drop-in cannot override host and port.
		return []agent.DocKey{
			{Key: "ControllerHost", Value: tcpHost},
			{Key: "ControllerPort", Value: tcpPort},
			{Key: "ControllerAddress", Value: ""},
		}, nil
	}
	return nil, fmt.Errorf("unknown reachability mode %q (want socket or tcp)", mode)
}

// verifyDropIn re-reads the rendered drop-in through the agent merge, as the
// QM agent will, and checks that the name comes out unchanged.
func verifyDropIn(d *QMAgentConfig) error {
	fsys := fstest.MapFS{
		strings.TrimPrefix(agent.PathsFor(agent.ProgramAgent).Default, "/"):    {Data: nil},
		strings.TrimPrefix(qmAgentDropInDirInsideQM, "/") + "/" + d.DropInName: {Data: d.DropIn},
	}
	cfg, err := agent.LoadAgent(agent.LoadOptions{FS: fsys, Hostname: "qm-container-id"})
	if err != nil {
		return fmt.Errorf("derive QM agent: rendered drop-in does not load: %w", err)
	}
	if got, _ := cfg.Get("NodeName"); got != d.NodeName {
		return fmt.Errorf("derive QM agent: rendered drop-in reads back NodeName %q, want %q", got, d.NodeName)
	}
	return nil
}

// parseBusAddress parses a single D-Bus address "transport:k=v,k=v".
// Values are not unescaped: BlueChi addresses have no escapes in practice,
// and a '%' makes the address refused.
func parseBusAddress(addr string) (string, map[string]string, error) {
	tr, rest, ok := strings.Cut(addr, ":")
	if !ok || tr == "" {
		return "", nil, fmt.Errorf("no transport")
	}
	if strings.ContainsAny(rest, "%;") {
		return "", nil, fmt.Errorf("escaped or multiple addresses are not supported")
	}
	params := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", nil, fmt.Errorf("parameter %q has no '='", kv)
		}
		params[k] = v
	}
	return tr, params, nil
}

// isLoopback reports whether host names this machine: a loopback IP or
// "localhost". Other names are not resolved (the derivation is pure).
func isLoopback(host string) bool {
	h := strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().IsLoopback() || ip.IsUnspecified()
	}
	h = strings.ToLower(h)
	return h == "localhost" || strings.HasSuffix(h, ".localhost") || h == "localhost.localdomain"
}

func parsePortString(s string) (uint16, error) {
	var n uint32
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
		n = n*10 + uint32(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(n), nil
}

// checkVolumePath checks a path for a Quadlet Volume= line: absolute, clean,
// and free of what Quadlet or podman would interpret (':', '%', '$',
// whitespace, control bytes).
func checkVolumePath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	for _, c := range []byte(p) {
		if c <= ' ' || c == 0x7f || c == ':' || c == '%' || c == '$' || c == '\\' || c == '"' || c == '\'' {
			return fmt.Errorf("%q contains %q", p, c)
		}
	}
	return nil
}

// checkDropInName checks a drop-in file name: NN-name.conf, plain.
func checkDropInName(name string) error {
	if !strings.HasSuffix(name, ".conf") || strings.ContainsAny(name, "/\\ \t\n") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("drop-in name %q: want a plain NN-name.conf", name)
	}
	if len(name) < 3 || name[0] < '0' || name[0] > '9' || name[1] < '0' || name[1] > '9' {
		return fmt.Errorf("drop-in name %q: want a plain NN-name.conf", name)
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
