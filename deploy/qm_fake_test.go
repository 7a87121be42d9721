package deploy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/qmconf"
)

// qmFake extends the deploy fake for `qm` tests without changing it: host nodes also run the
// remove script (argv[3] "qmorch-rm"), have a qm.service whose properties the test sets, and
// restarting qm.service takes the QM twin offline and (unless twinStaysAway) back online.
type qmFake struct {
	*fakeCtl
	mu            sync.Mutex
	qmProps       map[string]map[string]dbus.Variant // host -> qm.service properties
	twinStaysAway bool
	restartResult controller.JobResult
}

func newQMFake(nodes ...string) *qmFake {
	return &qmFake{fakeCtl: newFake(nodes...), qmProps: map[string]map[string]dbus.Variant{}}
}

func (q *qmFake) GetNode(ctx context.Context, name string) (Node, error) {
	n, err := q.fakeCtl.GetNode(ctx, name)
	if err != nil {
		return nil, err
	}
	return &qmFakeNode{fakeNode: n.(*fakeNode), q: q}, nil
}

// setOnline marks a node online and tells the status watchers.
func (f *fakeCtl) setOnline(node string) {
	f.mu.Lock()
	for i := range f.nodes {
		if f.nodes[i].Name == node {
			f.nodes[i].Status = controller.NodeOnline
		}
	}
	chs := slices.Clone(f.statusCh)
	f.mu.Unlock()
	for _, ch := range chs {
		select {
		case ch <- controller.NodeStatusEvent{Node: node, Status: controller.NodeOnline}:
		default:
		}
	}
}

type qmFakeNode struct {
	*fakeNode
	q *qmFake
}

func (n *qmFakeNode) StartTransientUnit(ctx context.Context, name string, mode controller.JobMode,
	props []controller.Property, aux []controller.AuxUnit) (dbus.ObjectPath, error) {
	var argv []string
	for _, p := range props {
		if p.Name == "ExecStart" {
			argv = p.Value.Value().([]ExecCommand)[0].Argv
		}
	}
	if len(argv) < 5 || argv[3] != "qmorch-rm" {
		return n.fakeNode.StartTransientUnit(ctx, name, mode, props, aux)
	}
	f := n.f
	f.record("%s StartTransientUnit %s", n.name, name)
	if err := n.checkOnline(); err != nil {
		return "", err
	}
	target := unescapeSystemd(argv[4])
	f.mu.Lock()
	f.units[n.name][name] = &fakeUnit{load: "loaded", active: "activating", sub: "start"}
	f.mu.Unlock()
	go func() {
		f.mu.Lock()
		status := int32(exitMissing)
		if _, ok := f.files[n.name][target]; ok {
			delete(f.files[n.name], target)
			status = 0
		}
		u := f.units[n.name][name]
		if u == nil {
			f.mu.Unlock()
			return
		}
		u.status, u.result = status, "success"
		f.mu.Unlock()
		f.setUnit(n.name, name, "active", "exited")
	}()
	return "/org/freedesktop/systemd1/job/2", nil
}

func (n *qmFakeNode) GetUnitProperties(ctx context.Context, unit, iface string) (map[string]dbus.Variant, error) {
	if unit != qmconf.QMService {
		return n.fakeNode.GetUnitProperties(ctx, unit, iface)
	}
	n.f.record("%s GetUnitProperties %s %s", n.name, unit, iface)
	n.q.mu.Lock()
	defer n.q.mu.Unlock()
	p, ok := n.q.qmProps[n.name]
	if !ok {
		return nil, fmt.Errorf("org.freedesktop.systemd1.NoSuchUnit: %w", controller.ErrNoSuchUnit)
	}
	out := map[string]dbus.Variant{}
	for k, v := range p {
		out[k] = v
	}
	return out, nil
}

func (n *qmFakeNode) RestartUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error) {
	if unit != qmconf.QMService {
		return n.fakeNode.RestartUnit(ctx, unit, mode)
	}
	n.f.record("%s RestartUnit %s", n.name, unit)
	if err := n.checkOnline(); err != nil {
		return nil, err
	}
	n.q.mu.Lock()
	res, away := n.q.restartResult, n.q.twinStaysAway
	n.q.mu.Unlock()
	if res == "" {
		res = controller.JobDone
	}
	return &qmRestartJob{f: n.f, twin: n.f.twinPrefix + n.name, result: res, stayAway: away}, nil
}

// qmRestartJob: the QM agent disconnects while the job runs and reconnects shortly after it.
type qmRestartJob struct {
	f        *fakeCtl
	twin     string
	result   controller.JobResult
	stayAway bool
}

func (j *qmRestartJob) Wait(context.Context) (controller.JobResult, error) {
	j.f.setOffline(j.twin)
	if !j.stayAway && j.result == controller.JobDone {
		go func() {
			time.Sleep(2 * time.Millisecond)
			j.f.setOnline(j.twin)
		}()
	}
	return j.result, nil
}

func (j *qmRestartJob) Cancel(context.Context) error { return nil }
