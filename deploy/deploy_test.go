package deploy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-multierror"
	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

const quadlet = "[Container]\nImage=localhost/busybox:latest\nExec=sleep infinity\n"

func request(nodes ...string) Request {
	return Request{Nodes: nodes, File: "nested.container", Content: []byte(quadlet)}
}

func newTestDeployer(f *fakeCtl, opts ...Option) *Deployer {
	var c Controller
	if f != nil {
		c = f
	}
	return New(c, append([]Option{WithSettle(100 * time.Millisecond), WithTimeout(5 * time.Second)}, opts...)...)
}

func mutatingCalls(f *fakeCtl) []string {
	var out []string
	for _, c := range f.Calls() {
		if c == "ListNodes" || strings.HasPrefix(c, "GetNode") {
			continue
		}
		out = append(out, c)
	}
	return out
}

func TestBadRequestsRefusedBeforeAnyCall(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		file    string
		content string
		nodes   []string
		opts    []Option
		want    string
	}{
		{"dotdot", "../x.container", quadlet, []string{"node1"}, nil, "path separators"},
		{"slash", "a/x.container", quadlet, []string{"node1"}, nil, "path separators"},
		{"space", "a b.container", quadlet, []string{"node1"}, nil, "must be NAME.container"},
		{"dollar", "$x.container", quadlet, []string{"node1"}, nil, "must be NAME.container"},
		{"percent", "%n.container", quadlet, []string{"node1"}, nil, "must be NAME.container"},
		{"template", "x@.container", quadlet, []string{"node1"}, nil, "must be NAME.container"},
		{"hidden", ".x.container", quadlet, []string{"node1"}, nil, "must be NAME.container"},
		{"suffix", "x.txt", quadlet, []string{"node1"}, nil, "must be NAME.container"},
		{"empty file", "x.container", "", []string{"node1"}, nil, "empty"},
		{"blank file", "x.container", " \n\n", []string{"node1"}, nil, "empty"},
		{"no image", "x.container", "[Container]\nExec=true\n", []string{"node1"}, nil, "Image"},
		{"no container section", "x.container", "[Unit]\nDescription=x\n", []string{"node1"}, nil, "[Container]"},
		{"too big", "x.container", quadlet + strings.Repeat("#", MaxFileSize), []string{"node1"}, nil, "credential"},
		{"no nodes", "x.container", quadlet, nil, nil, "no nodes"},
		{"node with space", "x.container", quadlet, []string{"node 1"}, nil, "whitespace"},
		{"node wildcard", "x.container", quadlet, []string{"*"}, nil, "'*'"},
		{"relative rwetcfs", "x.container", quadlet, []string{"node1"}, []Option{WithRWETCFS("etc/qm")}, "absolute"},
		{"rwetcfs with dollar", "x.container", quadlet, []string{"node1"}, []Option{WithRWETCFS("/etc/$qm")}, "rwetcfs"},
		{"rwetcfs unclean", "x.container", quadlet, []string{"node1"}, []Option{WithRWETCFS("/etc/../qm")}, "clean"},
		{"empty prefix", "x.container", quadlet, []string{"node1"}, []Option{WithTwinPrefix("")}, "twin prefix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake("node1", "qm.node1")
			req := Request{Nodes: tc.nodes, File: tc.file, Content: []byte(tc.content)}
			rep, err := newTestDeployer(f, tc.opts...).Deploy(context.Background(), req)
			require.Error(t, err)
			require.Nil(t, rep)
			require.ErrorIs(t, err, ErrInvalid)
			require.Contains(t, err.Error(), tc.want)
			require.Empty(t, f.Calls(), "no D-Bus call before validation passes")
		})
	}
}

func TestUnknownNodeListsKnownOnes(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1", "node-2.a", "qm.node-2.a")
	rep, err := newTestDeployer(f).Deploy(context.Background(), request("node1", "nodeX", "nodeY"))
	require.Nil(t, rep)
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), `unknown nodes "nodeX", "nodeY"`)
	require.Contains(t, err.Error(), "known nodes: node-2.a, node1, qm.node-2.a, qm.node1")
	require.Empty(t, mutatingCalls(f), "node1 must not be touched when another name is wrong")
}

// A QM twin named as a host node is known from ListNodes alone: a request error (like an
// unknown node), so the other nodes of the request are not touched first.
func TestTwinNamedIsInvalid(t *testing.T) {
	t.Parallel()
	for _, dry := range []bool{false, true} {
		f := newFake("node1", "qm.node1", "node2", "qm.node2")
		req := request("node1", "qm.node1", "qm.node2")
		req.DryRun = dry
		rep, err := newTestDeployer(f).Deploy(context.Background(), req)
		require.Nil(t, rep)
		require.ErrorIs(t, err, ErrInvalid)
		require.EqualError(t, err, "invalid request: nodes qm.node1, qm.node2 are QM twins; name their host nodes node1, node2")
		require.Equal(t, []string{"ListNodes"}, f.Calls())
	}
	// A node that merely starts with the prefix and has its own twin is a host.
	f := newFake("qm.edge", "qm.qm.edge")
	rep, err := newTestDeployer(f).Deploy(context.Background(), request("qm.edge"))
	require.NoError(t, err)
	require.Equal(t, ActionDeployed, rep.Results[0].Action)
}

func TestListNodesFailureIsUnreachable(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.listErr = controller.ErrAccessDenied
	_, err := newTestDeployer(f).Deploy(context.Background(), request("node1"))
	require.ErrorIs(t, err, ErrUnreachable)
	require.ErrorIs(t, err, controller.ErrAccessDenied)
}

func TestPreflightFailuresPerNode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		nodes []string
		req   string
		want  string
		is    error
	}{
		{"host offline", []string{"node1:offline", "qm.node1:offline"}, "node1", "node node1: host node node1 is offline", controller.ErrNodeOffline},
		{"twin offline", []string{"node1", "qm.node1:offline"}, "node1", "node node1: QM twin qm.node1 is offline", controller.ErrNodeOffline},
		{"twin missing", []string{"node1"}, "node1", "node node1: QM twin qm.node1 is not registered", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(tc.nodes...)
			rep, err := newTestDeployer(f).Deploy(context.Background(), request(tc.req))
			require.Error(t, err)
			require.NotNil(t, rep)
			require.Len(t, rep.Results, 1)
			require.Equal(t, ActionFailed, rep.Results[0].Action)
			require.Contains(t, err.Error(), tc.want)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			require.NotErrorIs(t, err, ErrInvalid)
			require.Empty(t, mutatingCalls(f))
		})
	}
}

func TestDeployOneNode(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1")
	rep, err := newTestDeployer(f).Deploy(context.Background(), request("node1"))
	require.NoError(t, err)
	require.Len(t, rep.Results, 1)
	r := rep.Results[0]
	require.Equal(t, Result{Node: "node1", Twin: "qm.node1", Unit: "nested.service",
		Path: "/etc/qm/containers/systemd/nested.container", Action: ActionDeployed, ActiveState: "active",
		Duration: r.Duration}, r)
	ff, ok := f.file("node1", "/etc/qm/containers/systemd/nested.container")
	require.True(t, ok)
	require.Equal(t, quadlet, string(ff.data))

	// Order: the monitor subscription precedes the call it observes.
	calls := f.Calls()
	idx := func(prefix string) int {
		for i, c := range calls {
			if strings.HasPrefix(c, prefix) {
				return i
			}
		}
		t.Fatalf("no call %q in %q", prefix, calls)
		return -1
	}
	require.Less(t, idx("Subscribe node1 qmorch-deliver-"), idx("node1 StartTransientUnit"))
	require.Less(t, idx("node1 StartTransientUnit"), idx("qm.node1 Reload"))
	require.Less(t, idx("Subscribe qm.node1 nested.service"), idx("qm.node1 StartUnit nested.service"))
	require.Less(t, idx("qm.node1 Reload"), idx("qm.node1 StartUnit nested.service"))
	require.Empty(t, f.callsMatching("RestartUnit"))
	// The delivery unit was collected.
	require.Len(t, f.callsMatching("node1 StopUnit qmorch-deliver-"), 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	for name := range f.units["node1"] {
		t.Errorf("transient unit %s left on node1", name)
	}
}

func TestNodeNamesWithDashesDigitsDots(t *testing.T) {
	t.Parallel()
	f := newFake("node-1.example", "qm-node-1.example", "9node", "qm-9node")
	f.twinPrefix = "qm-"
	rep, err := newTestDeployer(f, WithTwinPrefix("qm-")).Deploy(context.Background(), request("node-1.example", "9node"))
	require.NoError(t, err)
	require.Equal(t, "qm-node-1.example", rep.Results[0].Twin)
	require.Equal(t, ActionDeployed, rep.Results[1].Action)
}

func TestAllTakesNodesWithTwinsSorted(t *testing.T) {
	t.Parallel()
	f := newFake("node2", "qm.node2", "control", "node1", "qm.node1")
	rep, err := newTestDeployer(f).Deploy(context.Background(), Request{All: true, File: "nested.container", Content: []byte(quadlet)})
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
	require.Equal(t, "node1", rep.Results[0].Node)
	require.Equal(t, "node2", rep.Results[1].Node)
}

func TestPerNodeAggregation(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1", "node2:offline", "qm.node2:offline", "node3", "qm.node3")
	f.jobResult["qm.node3"] = controller.JobFailed
	rep, err := newTestDeployer(f).Deploy(context.Background(), request("node1", "node2", "node3"))
	require.Error(t, err)
	var merr *multierror.Error
	require.ErrorAs(t, err, &merr)
	require.Len(t, merr.Errors, 2)
	require.Contains(t, merr.Errors[0].Error(), "node node2: host node node2 is offline")
	require.Contains(t, merr.Errors[1].Error(), "node node3: start nested.service on qm.node3: job failed")
	require.Equal(t, ActionDeployed, rep.Results[0].Action)
	require.Equal(t, ActionFailed, rep.Results[1].Action)
	require.Equal(t, ActionFailed, rep.Results[2].Action)
	require.Equal(t, 2, rep.Failed())
	_, ok := f.file("node1", "/etc/qm/containers/systemd/nested.container")
	require.True(t, ok)
}

func TestRedeploy(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1")
	d := newTestDeployer(f)
	_, err := d.Deploy(context.Background(), request("node1"))
	require.NoError(t, err)

	// Same content: unchanged, nothing restarted or reloaded.
	n := len(f.Calls())
	rep, err := d.Deploy(context.Background(), request("node1"))
	require.NoError(t, err)
	require.Equal(t, ActionUnchanged, rep.Results[0].Action)
	require.Equal(t, "active", rep.Results[0].ActiveState)
	for _, c := range f.Calls()[n:] {
		require.NotContains(t, c, "Reload")
		require.NotContains(t, c, "StartUnit")
		require.NotContains(t, c, "RestartUnit")
	}

	// Changed content under a running unit: written, reloaded, restarted.
	n = len(f.Calls())
	req := request("node1")
	req.Content = []byte(quadlet + "Environment=X=2\n")
	rep, err = d.Deploy(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, ActionDeployed, rep.Results[0].Action)
	later := strings.Join(f.Calls()[n:], "\n")
	require.Contains(t, later, "qm.node1 Reload")
	require.Contains(t, later, "qm.node1 RestartUnit nested.service")
	require.NotContains(t, later, "qm.node1 StartUnit")
	ff, _ := f.file("node1", "/etc/qm/containers/systemd/nested.container")
	require.Equal(t, string(req.Content), string(ff.data))
}

func TestUnchangedButStoppedIsStarted(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1")
	d := newTestDeployer(f)
	req := request("node1")
	req.NoStart = true
	rep, err := d.Deploy(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, ActionInstalled, rep.Results[0].Action)
	require.Equal(t, "inactive", rep.Results[0].ActiveState)
	require.Len(t, f.callsMatching("qm.node1 Reload"), 1)
	require.Empty(t, f.callsMatching("StartUnit nested"))

	// --no-start again with the same content: nothing to do.
	rep, err = d.Deploy(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, ActionUnchanged, rep.Results[0].Action)
	require.Empty(t, f.callsMatching("StartUnit nested"))

	// Now without --no-start: same file, unit not running -> started.
	rep, err = d.Deploy(context.Background(), request("node1"))
	require.NoError(t, err)
	require.Equal(t, ActionDeployed, rep.Results[0].Action)
	require.Len(t, f.callsMatching("qm.node1 StartUnit nested.service"), 1)
}

func TestDryRunTouchesNothing(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1", "node2", "qm.node2:offline")
	req := request("node1", "node2")
	req.DryRun = true
	rep, err := newTestDeployer(f).Deploy(context.Background(), req)
	// A dry run plans and reports offline nodes in the results; like a real run, its error
	// aggregates them (exit code 1 when "ok" is false).
	require.EqualError(t, err, "1 error occurred:\n\t* node node2: QM twin qm.node2 is offline: node is offline\n\n")
	require.NotErrorIs(t, err, ErrInvalid)
	require.True(t, rep.DryRun)
	require.Equal(t, []string{"ListNodes"}, f.Calls())
	require.Equal(t, ActionPlanned, rep.Results[0].Action)
	var ops []string
	for _, s := range rep.Results[0].Plan {
		ops = append(ops, s.Node+" "+s.Op)
	}
	require.Equal(t, []string{"node1 Node.StartTransientUnit", "node1 Node.StopUnit+ResetFailedUnit",
		"qm.node1 Node.Reload", "qm.node1 Node.StartUnit|Node.RestartUnit"}, ops)
	require.Contains(t, rep.Results[0].Plan[0].Detail, "/etc/qm/containers/systemd/nested.container")
	require.Equal(t, ActionFailed, rep.Results[1].Action)
	require.ErrorIs(t, rep.Results[1].Err, controller.ErrNodeOffline)

	// Without a controller, explicit nodes still get a plan.
	rep, err = newTestDeployer(nil).Deploy(context.Background(), req)
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
}

func TestUnitFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(f *fakeCtl)
		opts  []Option
		want  string
		is    error
		check func(t *testing.T, f *fakeCtl)
	}{
		{name: "job failed", setup: func(f *fakeCtl) { f.jobResult["qm.node1"] = controller.JobFailed },
			want: "start nested.service on qm.node1: job failed (unit failed/failed"},
		{name: "crash right after start", setup: func(f *fakeCtl) { f.crash["qm.node1"] = "fail" },
			want: "unit left the active state right after start: failed/failed"},
		{name: "crash and auto-restart within the settle window", setup: func(f *fakeCtl) { f.crash["qm.node1"] = "flap" },
			want: "unit left the active state right after start: activating/auto-restart"},
		{name: "twin offline during the job", setup: func(f *fakeCtl) { f.jobOffline["qm.node1"] = true },
			want: "wait for job", is: controller.ErrNodeOffline},
		{name: "twin offline during the settle window", setup: func(f *fakeCtl) { f.offlineAt["qm.node1"] = "settle" },
			want: "went offline", is: controller.ErrNodeOffline},
		{name: "job timeout", setup: func(f *fakeCtl) { f.jobHang["qm.node1"] = true }, opts: []Option{WithTimeout(300 * time.Millisecond)},
			want: "wait for job", is: controller.ErrTimeout,
			check: func(t *testing.T, f *fakeCtl) { require.Len(t, f.callsMatching("qm.node1 Job.Cancel"), 1) }},
		{name: "host offline during delivery", setup: func(f *fakeCtl) { f.offlineAt["node1"] = "StartTransientUnit" },
			want: "node node1: deliver nested.container: write /etc/qm/containers/systemd/nested.container: wait for qmorch-deliver-", is: controller.ErrNodeOffline},
		{name: "delivery script fails", setup: func(f *fakeCtl) { f.writeFail["node1"] = true },
			want: "node node1: deliver nested.container: write /etc/qm/containers/systemd/nested.container: unit qmorch-deliver-",
			check: func(t *testing.T, f *fakeCtl) {
				require.Len(t, f.callsMatching("node1 ResetFailedUnit qmorch-deliver-"), 1)
				require.Empty(t, f.callsMatching("qm.node1 Reload"))
			}},
		{name: "delivery timeout", setup: func(f *fakeCtl) { f.transientDelay = time.Second }, opts: []Option{WithTimeout(200 * time.Millisecond)},
			want: "wait for qmorch-deliver-", is: controller.ErrTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake("node1", "qm.node1")
			tc.setup(f)
			start := time.Now()
			rep, err := newTestDeployer(f, tc.opts...).Deploy(context.Background(), request("node1"))
			require.Less(t, time.Since(start), 3*time.Second)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			require.Equal(t, ActionFailed, rep.Results[0].Action)
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

func TestCancelCancelsJob(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1")
	f.jobHang["qm.node1"] = true
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(f.callsMatching("StartUnit")) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := newTestDeployer(f).Deploy(ctx, request("node1"))
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, f.callsMatching("qm.node1 Job.Cancel"), 1)
}

func TestParallelismIsBounded(t *testing.T) {
	t.Parallel()
	var names []string
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		names = append(names, n, "qm."+n)
	}
	f := newFake(names...)
	f.transientDelay = 40 * time.Millisecond
	start := time.Now()
	rep, err := newTestDeployer(f, WithParallel(2), WithSettle(0)).Deploy(context.Background(), request("a", "b", "c", "d", "e", "f"))
	require.NoError(t, err)
	require.Len(t, rep.Results, 6)
	require.GreaterOrEqual(t, time.Since(start), 120*time.Millisecond, "6 nodes, 2 at a time, 40ms each")

	f = newFake(names...)
	f.transientDelay = 40 * time.Millisecond
	start = time.Now()
	_, err = newTestDeployer(f, WithSettle(0)).Deploy(context.Background(), request("a", "b", "c", "d", "e", "f"))
	require.NoError(t, err)
	require.Less(t, time.Since(start), 120*time.Millisecond, "default parallelism runs all 6 at once")
}

func TestServiceNameFromContent(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1")
	req := request("node1")
	req.Content = []byte(quadlet + "ServiceName=other\n")
	req.DryRun = true
	rep, err := newTestDeployer(f).Deploy(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, "other.service", rep.Results[0].Unit)
}

func TestDeliveryProps(t *testing.T) {
	t.Parallel()
	// A lone "\r" ends a line for systemd (and for qmconf/unitfile), so the bytes after it must
	// form a valid line of their own: a comment here.
	content := "[Container]\nImage=x\n# \"quotes\" 'single' $(touch /tmp/pwned) `id` ${HOME} $HOME %n %% \\\n# \x01\x02\xff\xfe\t\r# tail\n"
	f := newFake("node1", "qm.node1")
	req := request("node1")
	req.Content = []byte(content)
	_, err := newTestDeployer(f).Deploy(context.Background(), req)
	require.NoError(t, err)
	ff, _ := f.file("node1", "/etc/qm/containers/systemd/nested.container")
	require.Equal(t, content, string(ff.data))

	f.mu.Lock()
	defer f.mu.Unlock()
	require.Len(t, f.props, 1)
	for name, props := range f.props {
		require.Regexp(t, `^qmorch-deliver-[0-9a-f]{16}\.service$`, name)
		byName := map[string]dbus.Variant{}
		for _, p := range props {
			byName[p.Name] = p.Value
		}
		sig := func(k string) string { return byName[k].Signature().String() }
		require.Equal(t, "s", sig("Description"))
		require.Equal(t, "oneshot", byName["Type"].Value())
		require.Equal(t, true, byName["RemainAfterExit"].Value())
		require.Equal(t, "a(say)", sig("SetCredential"))
		require.Equal(t, "(aiai)", sig("SuccessExitStatus"))
		require.Equal(t, ExitStatusSet{Statuses: []int32{10}, Signals: []int32{}}, byName["SuccessExitStatus"].Value())
		require.Equal(t, "a(sasb)", sig("ExecStart"))
		require.Equal(t, "t", sig("TimeoutStartUSec"))
		creds := byName["SetCredential"].Value().([]Credential)
		require.Equal(t, []Credential{{ID: "payload", Data: []byte(content)}}, creds)
		exec := byName["ExecStart"].Value().([]ExecCommand)
		require.Len(t, exec, 1)
		require.Equal(t, "/bin/sh", exec[0].Path)
		require.False(t, exec[0].IgnoreFailure)
		argv := exec[0].Argv
		require.Len(t, argv, 8)
		require.Equal(t, []string{"/bin/sh", "-c", systemdLiteral(deliverScript), "qmorch-deliver", "${CREDENTIALS_DIRECTORY}/payload"}, argv[:5])
		require.Regexp(t, `^/etc/qm/containers/systemd/\.nested\.container\.qmorch-[0-9a-f]{16}$`, argv[5])
		require.Equal(t, []string{"/etc/qm/containers/systemd/nested.container", "/etc/qm/containers/systemd"}, argv[6:])
		for _, a := range argv {
			require.NotContains(t, a, "pwned", "user content never appears in the command line")
			require.NotContains(t, a, "Image=")
		}
	}
}

func TestSignaturesOfSystemdTypes(t *testing.T) {
	t.Parallel()
	require.Equal(t, "a(sasb)", dbus.SignatureOf([]ExecCommand{}).String())
	require.Equal(t, "a(say)", dbus.SignatureOf([]Credential{}).String())
	require.Equal(t, "(aiai)", dbus.SignatureOf(ExitStatusSet{}).String())
}

func TestErrorsCarryNoClassForNodeFailures(t *testing.T) {
	t.Parallel()
	f := newFake("node1", "qm.node1")
	f.jobResult["qm.node1"] = controller.JobFailed
	_, err := newTestDeployer(f).Deploy(context.Background(), request("node1"))
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnreachable))
}

// deployDouble starts the BlueChi test double with in-memory node1 and its QM twin qm.node1
// (which knows nested.service, as QM's Quadlet generator would make it) and returns it with a
// Deployer on the real D-Bus client: the waits below run against real JobRemoved signals and
// real node status changes, not against the fake.
func deployDouble(t *testing.T, opts ...Option) (*testcontroller.Harness, *Deployer) {
	t.Helper()
	if !testcontroller.IsRoot() {
		t.Skip("the test double's bus admits only root")
	}
	h := testcontroller.Start(t, testcontroller.WithMemoryNodes("node1", "qm.node1"))
	h.Node("qm.node1").AddUnit(testcontroller.UnitSpec{Name: "nested.service", Description: "nested"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := controller.New(ctx, controller.WithAddress(h.Address))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	base := []Option{WithTimeout(10 * time.Second), WithSettle(50 * time.Millisecond)}
	return h, New(FromClient(c), append(base, opts...)...)
}

// Acceptance 5: the job wait ends on JobRemoved, on the twin going offline and on the timeout.
func TestJobWaitEndsAgainstDouble(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		opts   []Option
		setup  func(t *testing.T, h *testcontroller.Harness)
		action Action
		is     error
		want   string
		within time.Duration
	}{
		{name: "JobRemoved done", action: ActionDeployed, within: 5 * time.Second},
		{name: "JobRemoved failed", action: ActionFailed, want: "job failed", within: 5 * time.Second,
			setup: func(t *testing.T, h *testcontroller.Harness) {
				require.NoError(t, h.Node("qm.node1").SetUnitFailing("nested.service", true))
			}},
		{name: "twin goes offline while the job runs", action: ActionFailed, is: controller.ErrNodeOffline,
			want: "wait for job", within: 5 * time.Second,
			setup: func(t *testing.T, h *testcontroller.Harness) {
				twin := h.Node("qm.node1")
				twin.Hold("nested.service")
				// BlueChi drops the job without JobRemoved: only the offline signal ends the wait.
				go func() {
					for twin.Calls("StartUnit") == 0 {
						time.Sleep(2 * time.Millisecond)
					}
					time.Sleep(50 * time.Millisecond)
					h.SetOnline("qm.node1", false)
				}()
			}},
		{name: "timeout", opts: []Option{WithTimeout(700 * time.Millisecond)}, action: ActionFailed,
			is: controller.ErrTimeout, want: "wait for job", within: 3 * time.Second,
			setup: func(t *testing.T, h *testcontroller.Harness) { h.Node("qm.node1").Hold("nested.service") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, d := deployDouble(t, tc.opts...)
			t.Cleanup(func() { h.Node("qm.node1").ReleaseAll() })
			if tc.setup != nil {
				tc.setup(t, h)
			}
			start := time.Now()
			rep, err := d.Deploy(context.Background(), request("node1"))
			require.Less(t, time.Since(start), tc.within)
			require.NotNil(t, rep, "%v", err)
			require.Len(t, rep.Results, 1)
			require.Equal(t, tc.action, rep.Results[0].Action, "%v", err)
			if tc.action != ActionFailed {
				require.NoError(t, err)
				require.Equal(t, "active", rep.Results[0].ActiveState)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
		})
	}
}

// Acceptance 5: bad names and files are refused before any D-Bus call reaches the controller.
func TestBadRequestsReachNoNodeOfDouble(t *testing.T) {
	t.Parallel()
	h, d := deployDouble(t)
	for _, tc := range []struct{ file, content string }{
		{"../x.container", quadlet}, {"a b.container", quadlet}, {"x.txt", quadlet},
		{"x.container", ""}, {"x.container", "[Container]\nExec=true\n"},
	} {
		rep, err := d.Deploy(context.Background(), Request{Nodes: []string{"node1"}, File: tc.file, Content: []byte(tc.content)})
		require.ErrorIs(t, err, ErrInvalid, "%s %q", tc.file, tc.content)
		require.Nil(t, rep)
	}
	for _, n := range []string{"node1", "qm.node1"} {
		for _, m := range []string{"StartTransientUnit", "Reload", "StartUnit", "RestartUnit"} {
			require.Zero(t, h.Node(n).Calls(m), "%s %s", n, m)
		}
	}
}

// recordingNode is an in-memory node that keeps the StartTransientUnit arguments as the
// controller decoded them from the wire.
type recordingNode struct {
	*testcontroller.MemoryNode
	mu    sync.Mutex
	props [][]testcontroller.Property
}

func (r *recordingNode) Call(ctx context.Context, method string, args []any) ([]any, error) {
	if method == "StartTransientUnit" && len(args) == 4 {
		var props []testcontroller.Property
		if err := dbus.Store(args[2:3], &props); err == nil {
			r.mu.Lock()
			r.props = append(r.props, props)
			r.mu.Unlock()
		}
	}
	return r.MemoryNode.Call(ctx, method, args)
}

// Acceptance 5: content that a shell or systemd would interpret travels as credential bytes,
// unchanged, through the real D-Bus encoding to the host node, and never in argv.
func TestContentTravelsVerbatimThroughDouble(t *testing.T) {
	t.Parallel()
	if !testcontroller.IsRoot() {
		t.Skip("the test double's bus admits only root")
	}
	content := "[Container]\nImage=x\nExec=sh -c 'echo \"$HOME\" $(id) `id` ${X} %n %% $$'\n" +
		"# \x01\x02\x7f\xc3\xa9\xff\xfe\t\\\n# tail\n"
	host := &recordingNode{MemoryNode: testcontroller.NewMemoryNode("node1")}
	twin := testcontroller.NewMemoryNode("qm.node1",
		append(testcontroller.DefaultUnits(), testcontroller.UnitSpec{Name: "nested.service"})...)
	h := testcontroller.Start(t, testcontroller.WithMemoryNodes(), testcontroller.WithNodes(twin),
		testcontroller.WithBackend("node1", host))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := controller.New(ctx, controller.WithAddress(h.Address))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	req := request("node1")
	req.Content = []byte(content)
	rep, err := New(FromClient(c), WithSettle(0)).Deploy(ctx, req)
	require.NoError(t, err)
	require.Equal(t, ActionDeployed, rep.Results[0].Action)

	host.mu.Lock()
	defer host.mu.Unlock()
	require.Len(t, host.props, 1)
	var cred []Credential
	var exec []ExecCommand
	for _, p := range host.props[0] {
		switch p.Name {
		case "SetCredential":
			require.NoError(t, dbus.Store([]any{p.Value.Value()}, &cred))
		case "ExecStart":
			require.NoError(t, dbus.Store([]any{p.Value.Value()}, &exec))
		}
	}
	require.Equal(t, []Credential{{ID: "payload", Data: []byte(content)}}, cred)
	require.Len(t, exec, 1)
	for _, a := range exec[0].Argv {
		require.NotContains(t, a, "Image=", "content never in argv")
		require.NotContains(t, a, "$(id)")
	}
}
