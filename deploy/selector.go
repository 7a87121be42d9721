package deploy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-multierror"

	"github.com/qmorch/qmorch/controller"
)

// SelectHosts turns command-line node selectors into host node names, using one ListNodes
// answer. Each selector is a name, a comma list, or a glob (path.Match syntax, e.g. "node*");
// all selects every host node that has a QM twin (prefix + name). Globs match host nodes only
// (never QM twins); an exact name that is not registered, or a glob that matches nothing, is an
// ErrInvalid error that lists the known nodes. An exact name of a QM twin (qm.node1 while node1
// is registered) is an ErrInvalid error too: every command works on a host node and its twin, so
// the twin's name is a mistake that must fail before any node is touched. The result is sorted
// and without duplicates.
func SelectHosts(infos []controller.NodeInfo, selectors []string, all bool, prefix string) ([]string, error) {
	return selectHosts(infos, selectors, all, prefix, false)
}

// SelectHostsOrTwins is SelectHosts for read-only views (status) where a QM twin's exact name
// selects its host node instead of being an error.
func SelectHostsOrTwins(infos []controller.NodeInfo, selectors []string, all bool, prefix string) ([]string, error) {
	return selectHosts(infos, selectors, all, prefix, true)
}

// twinHost returns the host node of name when name is a QM twin: it starts with prefix, the
// rest is a registered node, and it has no twin of its own (the rule resolve and SelectHosts share).
func twinHost(known func(string) bool, name, prefix string) (string, bool) {
	host, ok := strings.CutPrefix(name, prefix)
	if !ok || !known(host) || known(prefix+name) {
		return "", false
	}
	return host, true
}

// twinNamed is the error for a QM twin named where a host node is wanted.
func twinNamed(twins []string, hosts []string) error {
	if len(twins) == 1 {
		return invalidf("node %s is a QM twin; name its host node %s", twins[0], hosts[0])
	}
	return invalidf("nodes %s are QM twins; name their host nodes %s", strings.Join(twins, ", "), strings.Join(hosts, ", "))
}

func selectHosts(infos []controller.NodeInfo, selectors []string, all bool, prefix string, twinsOK bool) ([]string, error) {
	byName := make(map[string]bool, len(infos))
	for _, n := range infos {
		byName[n.Name] = true
	}
	isTwin := func(name string) bool {
		host, ok := strings.CutPrefix(name, prefix)
		return ok && byName[host]
	}
	var out []string
	if all {
		if len(selectors) > 0 {
			return nil, invalidf("give nodes or --all, not both")
		}
		for _, n := range infos {
			if !isTwin(n.Name) && byName[prefix+n.Name] {
				out = append(out, n.Name)
			}
		}
		if len(out) == 0 {
			return nil, invalidf("no node has a QM twin named %s<node> (nodes: %s)", prefix, knownNodes(infos))
		}
		slices.Sort(out)
		return out, nil
	}
	var unknown, twins, twinHosts []string
	for _, sel := range selectors {
		for _, s := range strings.Split(sel, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !strings.ContainsAny(s, "*?[") {
				if err := validateNodeName(s); err != nil {
					return nil, withClass(ErrInvalid, err)
				}
				if !byName[s] {
					unknown = append(unknown, fmt.Sprintf("%q", s))
					continue
				}
				if host, ok := twinHost(func(n string) bool { return byName[n] }, s, prefix); ok {
					if !twinsOK {
						twins, twinHosts = append(twins, s), append(twinHosts, host)
						continue
					}
					s = host
				}
				out = append(out, s)
				continue
			}
			if _, err := path.Match(s, ""); err != nil {
				return nil, invalidf("node pattern %q: %v", s, err)
			}
			matched := false
			for _, n := range infos {
				if ok, _ := path.Match(s, n.Name); ok && !isTwin(n.Name) {
					out, matched = append(out, n.Name), true
				}
			}
			if !matched {
				return nil, invalidf("node pattern %q matches no host node (known nodes: %s)", s, knownNodes(infos))
			}
		}
	}
	if len(unknown) > 0 {
		return nil, invalidf("unknown node %s (known nodes: %s)", strings.Join(unknown, ", "), knownNodes(infos))
	}
	if len(twins) > 0 {
		return nil, twinNamed(twins, twinHosts)
	}
	if len(out) == 0 {
		return nil, invalidf("no nodes given")
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// listNodesError classes a failed ListNodes as ErrUnreachable, saying "list nodes" once: the
// controller client's errors already start with it, other Controller implementations' may not.
func listNodesError(err error) error {
	if !strings.HasPrefix(err.Error(), "list nodes") {
		err = fmt.Errorf("list nodes: %w", err)
	}
	return withClass(ErrUnreachable, err)
}

// fanOut calls work(i) for i in [0, n), at most parallel at a time. An item that could not
// start before ctx ended gets skipped(i, err) instead, so every item gets exactly one result
// and one node never blocks or hides another.
func fanOut(ctx context.Context, n, parallel int, work func(i int), skipped func(i int, err error)) {
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				work(i)
			case <-ctx.Done():
				skipped(i, ctx.Err())
			}
		}()
	}
	wg.Wait()
}

// nodeErrors aggregates the per-node errors of a report; nil when every node succeeded.
func nodeErrors[R any](results []R, errOf func(R) error) error {
	var merr *multierror.Error
	for _, r := range results {
		if err := errOf(r); err != nil {
			merr = multierror.Append(merr, err)
		}
	}
	return merr.ErrorOrNil()
}

// nodeStatuses maps node names to their status from one ListNodes answer.
func nodeStatuses(infos []controller.NodeInfo) map[string]controller.NodeStatus {
	status := make(map[string]controller.NodeStatus, len(infos))
	for _, n := range infos {
		status[n.Name] = n.Status
	}
	return status
}

// newFleetRun starts a run with its own monitor hub; done closes the hub, bounded by
// cleanupTimeout even when ctx has ended.
func (d *Deployer) newFleetRun(ctx context.Context) (r *run, done func()) {
	r = &run{d: d, hub: newHub(ctx, d.c)}
	return r, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		r.hub.close(cctx)
	}
}

// getNodes resolves the host node and the QM twin of a selected target (failing with the
// target's own error first).
func (r *run) getNodes(ctx context.Context, t *target) error {
	if t.err != nil {
		return t.err
	}
	var err error
	if t.hostNode, err = r.d.c.GetNode(ctx, t.host); err != nil {
		return fmt.Errorf("node %s: %w", t.host, err)
	}
	if t.twinNode, err = r.d.c.GetNode(ctx, t.twin); err != nil {
		return fmt.Errorf("node %s: QM twin %s: %w", t.host, t.twin, err)
	}
	return nil
}
