//go:build e2e

package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
)

// provisionOutput is the documented `qmorch provision qm-agent --nodes ... -o json` shape (the
// fields the test reads).
type provisionOutput struct {
	OK      bool `json:"ok"`
	Results []struct {
		Node         string `json:"node"`
		QMNode       string `json:"qmNode"`
		Action       string `json:"action"`
		AgentRestart string `json:"agentRestart"`
		Error        string `json:"error"`
	} `json:"results"`
}

// standInAgent is a stand-in for bluechi-agent.service inside QM: the testbed's controller
// reaches QM's systemd over QM's bus socket, not through an agent, so only its restarts matter.
const standInAgent = `[Unit]
Description=qmorch e2e stand-in for the QM bluechi-agent

[Service]
ExecStart=/usr/bin/sleep infinity
`

// writeNew writes a file into a node's tree and registers its removal, and the removal of the
// directories this created, with t.Cleanup.
func writeNew(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	// The top-most missing directory goes away with the file.
	top := ""
	for d := filepath.Dir(p); d != root && d != "/"; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); os.IsNotExist(err) {
			top = d
		}
	}
	_, err := os.Lstat(p)
	require.True(t, os.IsNotExist(err), "%s exists already: the testbed is not clean", p)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	t.Cleanup(func() {
		if top != "" {
			require.NoError(t, os.RemoveAll(top))
			return
		}
		require.NoError(t, removeIfExists(p))
	})
}

// invocation reads the unit's InvocationID (new on every start) and state through the controller.
func invocation(t *testing.T, c *controller.Client, node, unit string) (id, active string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.GetNode(ctx, node)
	require.NoError(t, err)
	props, err := n.GetUnitProperties(ctx, unit, "org.freedesktop.systemd1.Unit")
	require.NoError(t, err)
	raw, _ := props["InvocationID"].Value().([]byte)
	active, _ = props["ActiveState"].Value().(string)
	return hex.EncodeToString(raw), active
}

// jobOn runs a unit job on a BlueChi node and waits for it.
func jobOn(t *testing.T, c *controller.Client, node string, start bool, unit string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.GetNode(ctx, node)
	require.NoError(t, err)
	var job *controller.Job
	if start {
		job, err = n.StartUnit(ctx, unit, controller.JobReplace)
	} else {
		job, err = n.StopUnit(ctx, unit, controller.JobReplace)
	}
	require.NoError(t, err)
	res, err := job.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, controller.JobDone, res)
}

func reloadNode(t *testing.T, c *controller.Client, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.GetNode(ctx, node)
	require.NoError(t, err)
	require.NoError(t, n.Reload(ctx))
}

// Acceptance 5: node1 is provisioned from its own host files (a `#NodeName=` template in
// agent.conf, the real name in a drop-in); QM's drop-in gets NodeName=qm.node1; QM's agent is
// restarted only when the content changed.
func TestProvisionQMAgentNode1(t *testing.T) {
	tb := testbedEnv(t)
	c := client(t)
	root := tb.NodeRoot("node1")
	require.NotEmpty(t, root)
	control := suite.env["NODE_control_ADDR"]
	require.NotEmpty(t, control)

	// The host agent points at the controller on "control": tcp mode, no qm.container drop-in
	// (which would need a QM restart).
	writeNew(t, root, "etc/bluechi/agent.conf", "[bluechi-agent]\n#NodeName=\nControllerHost="+control+"\n")
	writeNew(t, root, "etc/bluechi/agent.conf.d/50-name.conf", "[bluechi-agent]\nNodeName=node1\n")
	qmBluechi := filepath.Join(tb.QMEtc("node1"), "bluechi")
	dropIn := filepath.Join(qmBluechi, "agent.conf.d", "99-qmorch.conf")
	_, err := os.Lstat(dropIn)
	require.True(t, os.IsNotExist(err), "%s exists already: the testbed is not clean", dropIn)
	_, err = os.Lstat(qmBluechi)
	hadQMBluechi := err == nil
	t.Cleanup(func() {
		if hadQMBluechi {
			require.NoError(t, removeIfExists(dropIn))
			return
		}
		require.NoError(t, os.RemoveAll(qmBluechi)) // qmorch created it on the node
	})

	// The stand-in agent inside node1's QM (QM's /etc is node1's /etc/qm). Cleanups run LIFO:
	// stop the unit, remove its file, then daemon-reload QM.
	const agentUnit = "bluechi-agent.service"
	t.Cleanup(func() { reloadNode(t, c, "qm.node1") })
	writeNew(t, tb.QMEtc("node1"), "systemd/system/"+agentUnit, standInAgent)
	t.Cleanup(func() { jobOn(t, c, "qm.node1", false, agentUnit) })
	reloadNode(t, c, "qm.node1")
	jobOn(t, c, "qm.node1", true, agentUnit)
	id0, active := invocation(t, c, "qm.node1", agentUnit)
	require.Equal(t, "active", active)
	require.NotEmpty(t, id0)

	// First run: the file is new, so the agent is restarted.
	out, _, code := runQmorch(t, "provision", "qm-agent", "--nodes", "node1", "-o", "json")
	require.Equal(t, 0, code)
	var res provisionOutput
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.True(t, res.OK)
	require.Len(t, res.Results, 1)
	require.Equal(t, "changed", res.Results[0].Action)
	require.Equal(t, "restarted", res.Results[0].AgentRestart)

	data, err := os.ReadFile(dropIn)
	require.NoError(t, err)
	lines := strings.Split(string(data), "\n")
	require.Contains(t, lines, "NodeName=qm.node1")
	require.Contains(t, lines, "ControllerHost="+control)
	require.Contains(t, lines, "ControllerPort=842")
	fi, err := os.Stat(dropIn)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	mtime := fi.ModTime()

	id1, active := invocation(t, c, "qm.node1", agentUnit)
	require.Equal(t, "active", active)
	require.NotEqual(t, id0, id1, "the QM agent must be restarted when its config changed")

	// Second run: nothing changes, nothing is restarted.
	out, _, code = runQmorch(t, "provision", "qm-agent", "--nodes", "node1", "-o", "json")
	require.Equal(t, 0, code)
	res = provisionOutput{}
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Equal(t, "unchanged", res.Results[0].Action)
	require.Equal(t, "not-needed", res.Results[0].AgentRestart)
	id2, _ := invocation(t, c, "qm.node1", agentUnit)
	require.Equal(t, id1, id2, "an unchanged config must not restart the QM agent")
	fi, err = os.Stat(dropIn)
	require.NoError(t, err)
	require.True(t, fi.ModTime().Equal(mtime), "an unchanged file must not be rewritten")
	data2, err := os.ReadFile(dropIn)
	require.NoError(t, err)
	require.Equal(t, data, data2)
}
