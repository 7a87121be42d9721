package agent

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

// TestEmptyValueIsZeroNotDefault pins a BlueChi detail the docs get wrong: `Key=` in a later
// file stores no value (cfg_s_set_value keeps NULL for ""), agent_parse_config then skips the
// key, and the field keeps agent_new's malloc0 zero, not the documented default. So
// `HeartbeatInterval=` means 0 (heartbeats off) and `ControllerPort=` means port 0.
func TestEmptyValueIsZeroNotDefault(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		agentDefault:             {Data: nil},
		"etc/bluechi/agent.conf": {Data: []byte("[bluechi-agent]\nNodeName=n\nHeartbeatInterval=\nControllerPort=\n")},
	}
	cfg, err := LoadAgent(LoadOptions{FS: fsys, Hostname: "h"})
	require.NoError(t, err)
	e := cfg.Lookup(SectionAgent, "HeartbeatInterval")
	require.Equal(t, "", e.Value)
	require.Equal(t, "2000", e.Replaced[0].Value, "the built-in default was there before")
	a, err := cfg.Agent(AgentFlags{})
	require.NoError(t, err)
	require.Equal(t, int64(0), a.HeartbeatInterval)
	require.Equal(t, uint16(0), a.ControllerPort)
}
