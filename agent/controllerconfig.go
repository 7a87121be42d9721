package agent

import (
	"fmt"
	"strings"
)

// ControllerFlags are bluechi-controller's command-line overrides.
type ControllerFlags struct {
	Port string // -p
}

// NodeSection is one "[node NAME]" section.
type NodeSection struct {
	Name                   string
	Allowed                bool
	RequiredSelinuxContext string
	AllowDependenciesOn    []string
}

// ControllerConfig is what bluechi-controller actually uses.
type ControllerConfig struct {
	UseTCP                 bool
	UseUDS                 bool
	ControllerPort         uint16
	AllowedNodeNames       []string // split like the controller: on ',', empty pieces dropped, no trimming
	HeartbeatInterval      int64
	NodeHeartbeatThreshold int64
	NodeSections           []NodeSection // sorted by section name
	// Nodes is the node list in the controller's order (what ListNodes
	// returns): AllowedNodeNames without duplicates, then the names of
	// [node NAME] sections with Allowed true, in section order.
	Nodes    []string
	Warnings []Warning
}

// Serves reports whether the controller gets as far as serving D-Bus: with
// neither TCP nor a unix socket it exits ("No connection request handler
// configured").
func (cc *ControllerConfig) Serves() bool { return cc.UseTCP || cc.UseUDS }

// SplitNodeNames splits a node list exactly like the controller (strtok_r on
// ","): empty pieces are dropped, nothing is trimmed.
func SplitNodeNames(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
}

// Controller returns the effective controller settings (controller_apply_config
// plus -p).
func (c *Config) Controller(flags ControllerFlags) (*ControllerConfig, error) {
	cc := &ControllerConfig{}
	useTCP, _ := c.Get("UseTCP")
	useUDS, _ := c.Get("UseUDS")
	cc.UseTCP, cc.UseUDS = ParseBool(useTCP), ParseBool(useUDS)
	if v, ok := c.Get("ControllerPort"); ok {
		p, err := parsePort(v)
		if err != nil {
			return nil, c.valueError("ControllerPort", err)
		}
		cc.ControllerPort = p
	}
	for _, n := range []struct {
		key string
		dst *int64
	}{
		{"HeartbeatInterval", &cc.HeartbeatInterval},
		{"NodeHeartbeatThreshold", &cc.NodeHeartbeatThreshold},
	} {
		if v, ok := c.Get(n.key); ok {
			x, err := parseLong(v)
			if err != nil {
				return nil, c.valueError(n.key, err)
			}
			*n.dst = x
		}
	}

	seen := map[string]bool{}
	allowed, _ := c.Get("AllowedNodeNames")
	cc.AllowedNodeNames = SplitNodeNames(allowed)
	origin := Origin{}
	if e := c.Lookup(SectionController, "AllowedNodeNames"); e != nil {
		origin = e.Origin
	}
	for _, n := range cc.AllowedNodeNames {
		if strings.ContainsFunc(n, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }) {
			cc.Warnings = append(cc.Warnings, Warning{Kind: WarnNodeNameSpace, Path: origin.Path, Line: origin.Line(),
				Msg: fmt.Sprintf("AllowedNodeNames entry %q contains whitespace: BlueChi does not trim it", n)})
		}
		if seen[n] {
			cc.Warnings = append(cc.Warnings, Warning{Kind: WarnDuplicateNode, Path: origin.Path, Line: origin.Line(),
				Msg: fmt.Sprintf("AllowedNodeNames lists %q more than once", n)})
			continue
		}
		seen[n] = true
		cc.Nodes = append(cc.Nodes, n)
	}

	for _, s := range c.Sections() {
		name, ok := strings.CutPrefix(s, NodeSectionPrefix)
		if !ok {
			continue
		}
		ns := NodeSection{Name: name}
		v, _ := c.GetIn(s, "Allowed")
		ns.Allowed = ParseBool(v)
		ns.RequiredSelinuxContext, _ = c.GetIn(s, "RequiredSelinuxContext")
		deps, _ := c.GetIn(s, "AllowDependenciesOn")
		ns.AllowDependenciesOn = SplitNodeNames(deps)
		cc.NodeSections = append(cc.NodeSections, ns)
		if seen[name] {
			continue
		}
		if !ns.Allowed {
			e := c.Entries(s)[0]
			cc.Warnings = append(cc.Warnings, Warning{Kind: WarnNodeSectionUnread, Path: e.Origin.Path, Line: e.Origin.Line(),
				Msg: fmt.Sprintf("[%s] is for a node that is not allowed (no Allowed=true, not in AllowedNodeNames)", s)})
			continue
		}
		seen[name] = true
		cc.Nodes = append(cc.Nodes, name)
	}

	if flags.Port != "" {
		p, err := parsePort(flags.Port)
		if err != nil {
			return nil, fmt.Errorf("-p: %w", err)
		}
		cc.ControllerPort = p
	}
	return cc, nil
}
