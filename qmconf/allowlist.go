package qmconf

import (
	"fmt"
	"path"
	"strings"
	"testing/fstest"

	"github.com/qmorch/qmorch/agent"
)

// DefaultControllerDropIn is qmorch's controller drop-in; it sorts last so
// its AllowedNodeNames wins.
const DefaultControllerDropIn = "99-qmorch.conf"

// AllowListOptions tune RenderAllowList.
type AllowListOptions struct {
	Prefix     string // QM twin prefix; "" means DefaultTwinPrefix
	DropInName string // "" means DefaultControllerDropIn
}

// AllowList is a rendered controller drop-in.
type AllowList struct {
	Path    string // /etc/bluechi/controller.conf.d/NN-qmorch.conf
	Content []byte
	Names   []string // AllowedNodeNames in order, as the controller will read them
}

// RenderAllowList renders a controller drop-in whose AllowedNodeNames holds
// every node and its QM twin. A later file replaces AllowedNodeNames as a
// whole, so the names the controller allows today (current, may be nil) are
// kept first. Lines are wrapped with continuation lines well under 500
// bytes, and the result is checked by reading it back through the
// controller merge.
func RenderAllowList(current *agent.Config, nodes []string, opts AllowListOptions) (*AllowList, error) {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultTwinPrefix
	}
	name := opts.DropInName
	if name == "" {
		name = DefaultControllerDropIn
	}
	if err := checkDropInName(name); err != nil {
		return nil, err
	}

	var names []string
	seen := map[string]bool{}
	add := func(n string) error {
		if err := ValidateNodeName(n); err != nil {
			return err
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
		return nil
	}
	if current != nil {
		cc, err := current.Controller(agent.ControllerFlags{})
		if err != nil {
			return nil, fmt.Errorf("allow-list: current controller configuration: %w", err)
		}
		for _, n := range cc.AllowedNodeNames {
			if err := add(n); err != nil {
				return nil, fmt.Errorf("allow-list: name already in AllowedNodeNames: %w", err)
			}
		}
	}
	for _, n := range nodes {
		if strings.HasPrefix(n, prefix) {
			return nil, fmt.Errorf("allow-list: %q already starts with the QM prefix %q; pass host node names", n, prefix)
		}
		for _, x := range []string{n, TwinName(prefix, n)} {
			if err := add(x); err != nil {
				return nil, fmt.Errorf("allow-list: %w", err)
			}
		}
	}

	content, err := agent.Render(agent.Document{
		Header: []string{
			"Written by qmorch: allows every node and its QM twin.",
			"Replaces AllowedNodeNames from earlier files; edits are overwritten.",
		},
		Sections: []agent.DocSection{{Name: agent.SectionController, Keys: []agent.DocKey{
			{Key: "AllowedNodeNames", List: names},
		}}},
	})
	if err != nil {
		return nil, fmt.Errorf("allow-list: render: %w", err)
	}
	al := &AllowList{
		Path:    path.Join(agent.PathsFor(agent.ProgramController).DropIn, name),
		Content: content,
		Names:   names,
	}
	if err := verifyAllowList(al); err != nil {
		return nil, err
	}
	return al, nil
}

// verifyAllowList reads the drop-in back through the controller merge and
// checks the node list is exactly Names.
func verifyAllowList(al *AllowList) error {
	fsys := fstest.MapFS{
		strings.TrimPrefix(agent.PathsFor(agent.ProgramController).Default, "/"): {Data: nil},
		strings.TrimPrefix(al.Path, "/"):                                         {Data: al.Content},
	}
	cfg, err := agent.LoadController(agent.LoadOptions{FS: fsys})
	if err != nil {
		return fmt.Errorf("allow-list: rendered drop-in does not load: %w", err)
	}
	cc, err := cfg.Controller(agent.ControllerFlags{})
	if err != nil {
		return fmt.Errorf("allow-list: rendered drop-in: %w", err)
	}
	if strings.Join(cc.Nodes, "\n") != strings.Join(al.Names, "\n") {
		return fmt.Errorf("allow-list: rendered drop-in reads back %d names, want %d", len(cc.Nodes), len(al.Names))
	}
	return nil
}
